"""Decode speed: r1 (base, turbo) against transformers' generate, in one run, on one machine.

For each model: batch-1 decode tokens/s and time to first token; then throughput at several
concurrency levels (r1's continuous batching vs transformers' batched generate); for the GGUF
model, llama.cpp too when `llama-cpp-python` is installed (built from source: `CMAKE_ARGS=
"-DGGML_NATIVE=ON" pip install llama-cpp-python`, ~18 min here). The run also
measures this machine's memory copy bandwidth and prints each batch-1 figure as a fraction of
the bandwidth bound (bandwidth / bytes of weights read per generated token).

    .venv/bin/python bench/decode.py                 # SmolLM2 GGUF + a DeepSeek-architecture model
    .venv/bin/python bench/decode.py --quick         # fewer tokens and levels
Writes results/decode.json and prints markdown tables (copied into docs/bench-decode.md).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import r1  # noqa: E402
from bench.common import copy_bandwidth, write_results  # noqa: E402
from r1.commands.common import smollm2_gguf  # noqa: E402
from r1.config import count_params, preset  # noqa: E402
from r1.engine.engine import LLM  # noqa: E402
from r1.engine.sampling import SamplingParams  # noqa: E402
from r1.model import build_model  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to count."
USERS = 16  # requests in the users' case below


def bytes_per_token(model) -> int:
    """Weight bytes one decode step reads: everything but the embedding table (a row lookup;
    unless the head is that same tensor) and the routed experts a token does not visit. Turbo
    quantizes a tied head into its own int8 copy, so there the float table is not read."""
    cfg = model.config
    head_is_table = getattr(model.lm_head, "weight", None) is model.model.embed_tokens.weight
    frac = cfg.num_experts_per_tok / cfg.n_routed_experts if cfg.n_routed_experts else 1.0
    total = 0
    seen = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) in seen or name.startswith("mtp.") or name == "rotary.inv_freq":
            continue
        seen.add(id(t))
        n = t.numel() * t.element_size()
        if name == "model.embed_tokens.weight" and not head_is_table:
            continue
        total += n * (frac if ".mlp.experts." in name else 1.0)
    return int(total)


def r1_batch1(llm: LLM, ids: list[int], n: int) -> tuple[float, float, float]:
    """(warm-up s -- the first request, which compiles when compiling --, TTFT s, decode tok/s)."""
    sp = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
    # Warm up. A speculating engine decides after spec_probe_drafts drafts whether drafting pays;
    # if it stops, plain (compiled) steps begin then, so the warm-up runs past that point too.
    eng = llm.engine
    warm_tokens = 2 * eng.config.spec_probe_drafts if eng.speculative else 4
    t = time.perf_counter()
    llm.generate([ids], SamplingParams(temperature=0, max_tokens=warm_tokens, ignore_eos=True))
    warm = time.perf_counter() - t
    t0 = time.perf_counter()
    first = last = None
    count = 0
    for out in llm.stream(ids, sp):
        now = time.perf_counter()
        k = len(out.outputs[0].token_ids_delta)
        if k and first is None:
            first, count = now, k
        elif k:
            count += k
        last = now
    return warm, first - t0, (count - 1) / (last - first)


def r1_concurrent(llm: LLM, ids: list[int], c: int, n: int) -> float:
    prompts = [ids + [ids[i % len(ids)]] for i in range(c)]  # distinct prompts, no shared prefix tail
    llm.generate(prompts, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))  # warm up (compiles)
    t = time.perf_counter()
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    return sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t)


# The case a user hits: different requests of different lengths (~10-20 tokens, no chat template, no
# shared prefix), one `LLM.generate` call on the list; a separate set warms up, so the measured call
# reuses no cached prefix. transformers gets the same prompts left-padded with an attention mask.
USER_PROMPTS = [
    "The capital of France is", "Write a haiku about the sea at night, with the moon rising",
    "List three reasons why people enjoy hiking in the mountains:", "Once upon a time, in a small village,",
    "Explain photosynthesis to a ten year old child.", "def fibonacci(n):", "My favourite recipe for pancakes needs",
    "The three laws of motion, stated simply, are", "Translate to French: the cat sleeps on the warm windowsill.",
    "What should I pack for a week-long trip to Norway in winter?", "Dear hiring manager, I am writing to apply for",
    "A short summary of the history of the printing press:", "Here is a list of ten fruits: apple,",
    "Why is the sky blue during the day but red at sunset?", "In 1969, the first humans to walk on the moon",
    "The best way to learn a new language as an adult is",
]
WARM_PROMPTS = ["Hello there, how", "The weather today is", "Numbers: one, two,", "A poem about autumn leaves"]


def user_prompts(tok, c: int) -> list[list[int]]:
    return [tok.encode(USER_PROMPTS[i % len(USER_PROMPTS)]) for i in range(c)]


def r1_users(llm: LLM, c: int, n: int) -> float:
    tok = llm.tokenizer
    llm.generate([tok.encode(p) for p in WARM_PROMPTS], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    prompts = user_prompts(tok, c)
    t = time.perf_counter()
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
    return sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t)


def hf_users(hf, tok, c: int, n: int) -> float:
    prompts = user_prompts(tok, c)
    width = max(len(p) for p in prompts)
    pad = hf.config.eos_token_id if hf.config.pad_token_id is None else hf.config.pad_token_id
    pad = pad[0] if isinstance(pad, list) else pad
    x = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        hf.generate(x[:2], attention_mask=mask[:2], max_new_tokens=2, do_sample=False, pad_token_id=pad)  # warm up
        t = time.perf_counter()
        hf.generate(x, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad)
    return c * n / (time.perf_counter() - t)


def hf_batch1(hf, ids: list[int], n: int) -> tuple[float, float]:
    x = torch.tensor([ids])
    with torch.no_grad():
        hf.generate(x, max_new_tokens=2, do_sample=False)
        t = time.perf_counter()
        hf.generate(x, max_new_tokens=1, do_sample=False, min_new_tokens=1)
        ttft = time.perf_counter() - t
        t = time.perf_counter()
        hf.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        total = time.perf_counter() - t
    return ttft, (n - 1) / max(total - ttft, 1e-9)


def hf_concurrent(hf, ids: list[int], c: int, n: int) -> float:
    prompts = [ids + [ids[i % len(ids)]] for i in range(c)]
    x = torch.tensor(prompts)
    with torch.no_grad():
        t = time.perf_counter()
        hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return c * n / (time.perf_counter() - t)


def llama_cpp_rows(path: Path, ids: list[int], n: int, levels: list[int], threads: int) -> tuple[dict, dict] | None:
    """llama.cpp (through llama-cpp-python, if installed) on the GGUF file itself, same prompt ids:
    batch-1 TTFT and decode tok/s, and c requests served one after another -- the Python binding
    keeps one sequence per `Llama`, so that is what its users get for concurrent requests."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)

    def one() -> tuple[float, float]:
        llm.reset()  # no prefix reuse between runs
        t0 = time.perf_counter()
        first = last = None
        for i, _ in enumerate(llm.generate(ids, temp=0.0, top_k=1, reset=True)):
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            if i + 1 == n:
                break
        return first - t0, (n - 1) / (last - first)

    one()  # warm up
    ttft, tps = one()
    conc = {}
    for c in levels:
        t = time.perf_counter()
        for _ in range(c):
            one()
        conc[c] = c * n / (time.perf_counter() - t)
    return {"ttft_s": ttft, "tok_s": tps}, conc


def deepseek_model(folder: Path) -> Path:
    """A DeepSeek-V3-architecture model (MLA + MoE + MTP) of SmolLM2's size class, random weights:
    speed does not depend on what the weights know."""
    cfg = preset("tiny-deepseek", vocab_size=49152, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                 num_attention_heads=8, num_key_value_heads=8, kv_lora_rank=128, qk_nope_head_dim=32,
                 qk_rope_head_dim=32, v_head_dim=32, q_lora_rank=192, n_routed_experts=16, n_shared_experts=1,
                 num_experts_per_tok=2, moe_intermediate_size=256, n_group=4, topk_group=2, first_k_dense_replace=1,
                 max_position_embeddings=4096, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    tok = r1.load_tokenizer(smollm2_gguf())
    r1.save_model(model, folder, extra_files={"tokenizer.json": tok.backend.to_str()})
    return folder


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--models", default="smollm2,deepseek")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp column (llama-cpp-python)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for every engine (0 = torch's default); "
                    "on a shared machine 1 avoids the stalls of OpenMP threads waiting for a busy core")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.tokens, args.levels = 24, "1,4,16"
    levels = [int(x) for x in args.levels.split(",")]
    bw = copy_bandwidth()
    results = {"device": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "copy_bandwidth_GBps": bw / 1e9, "tokens": args.tokens, "models": {}}
    print(f"copy bandwidth: {bw / 1e9:.1f} GB/s, torch threads: {torch.get_num_threads()}")
    tmp = Path(tempfile.mkdtemp())
    for name in args.models.split(","):
        path = smollm2_gguf() if name == "smollm2" else deepseek_model(tmp / "deepseek")
        res = results["models"][name] = {"path": str(path), "rows": {}, "concurrency": {}}
        # base eager, base compiled (same weights and decoding, compiled steps), turbo (compiles)
        for label, profile, extra in (("r1 base", "base", {}), ("r1 base compiled", "base", {"compile": True}),
                                      ("r1 turbo", "turbo", {})):
            llm = LLM(path, profile=profile, kv_cache_gb=1.0, max_num_seqs=max(levels), **extra)
            tok = llm.tokenizer
            ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": PROMPT}]))
            bpt = bytes_per_token(llm.engine.model)
            warm, ttft, tps = r1_batch1(llm, ids, args.tokens)
            bound = bw / bpt
            row = {"warmup_s": warm, "ttft_s": ttft, "tok_s": tps, "weight_bytes_per_token": bpt, "bound_tok_s": bound,
                   "fraction_of_bound": tps / bound, "compiled": llm.engine.runner.compiled is not None}
            if name == "deepseek":
                r = count_params(llm.engine.model.config)
                kv_elem_bytes = 1 if profile == "turbo" else 4
                per_token = r.kv_elems_per_token_layer * kv_elem_bytes + (8 if profile == "turbo" else 0)
                row["kv_bytes_per_token_layer"] = per_token
                row["mha_kv_bytes_per_token_layer"] = r.kv_elems_naive_per_token_layer * 4
                row["kv_fraction_of_mha"] = per_token / row["mha_kv_bytes_per_token_layer"]
                row["spec_accept"] = (llm.engine.stats["spec_accepted"] / llm.engine.stats["spec_drafted"]
                                      if llm.engine.stats["spec_drafted"] else None)
                row["spec_stopped_after"] = llm.engine.stats.get("spec_stopped_after")
            res["rows"][label] = row
            for c in levels:
                res["concurrency"].setdefault(label, {})[c] = r1_concurrent(llm, ids, c, args.tokens)
            res.setdefault("users", {})[label] = r1_users(llm, USERS, args.tokens)
            print(name, label, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                  res["concurrency"][label], flush=True)
            del llm
        if name == "smollm2" and not args.no_llama_cpp:
            got = llama_cpp_rows(path, ids, args.tokens, levels, torch.get_num_threads())
            if got is None:
                print("llama.cpp: llama-cpp-python is not installed; no column for it", flush=True)
            else:
                res["rows"]["llama.cpp (GGUF Q4_1)"], res["concurrency"]["llama.cpp (GGUF Q4_1)"] = got
                print(name, "llama.cpp", got, flush=True)
        if not args.no_hf:
            import transformers

            if name == "smollm2":
                hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            else:
                hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            hf.eval()
            ttft, tps = hf_batch1(hf, ids, args.tokens)
            bpt = sum(p.numel() * p.element_size() for p in hf.parameters())
            res["rows"]["transformers"] = {"ttft_s": ttft, "tok_s": tps}
            res["concurrency"]["transformers"] = {c: hf_concurrent(hf, ids, c, args.tokens) for c in levels}
            res.setdefault("users", {})["transformers"] = hf_users(hf, tok, USERS, args.tokens)
            print(name, "transformers", res["rows"]["transformers"], res["concurrency"]["transformers"], flush=True)
            del hf
    write_results("decode", results, report(results))
    return 0


def report(results: dict) -> str:
    lines = [f"copy bandwidth {results['copy_bandwidth_GBps']:.1f} GB/s; {results['device']}; "
             f"{results['tokens']} new tokens per request", ""]
    for name, res in results["models"].items():
        rows = res["rows"]
        hf = rows.get("transformers", {}).get("tok_s")
        lines += [f"### {name}", "", "| engine | batch-1 tok/s | TTFT s | x transformers | bound tok/s | of bound "
                  "| first request s |", "|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            ratio = f"{r['tok_s'] / hf:.2f}x" if hf else "-"
            bound = f"{r['bound_tok_s']:.0f}" if "bound_tok_s" in r else "-"
            frac = f"{r['fraction_of_bound']:.0%}" if "fraction_of_bound" in r else "-"
            warm = f"{r['warmup_s']:.1f}" if "warmup_s" in r else "-"
            lines.append(f"| {k} | {r['tok_s']:.1f} | {r['ttft_s']:.3f} | {ratio} | {bound} | {frac} | {warm} |")
        levels = list(next(iter(res["concurrency"].values())).keys())
        lines += ["", "| engine | " + " | ".join(f"{c} concurrent tok/s" for c in levels) + " |",
                  "|---|" + "---|" * len(levels)]
        hfc = res["concurrency"].get("transformers")
        for k, conc in res["concurrency"].items():
            cells = [f"{conc[c]:.1f}" + (f" ({conc[c] / hfc[c]:.1f}x)" if hfc and k != "transformers" else "")
                     for c in levels]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lc = [k for k in rows if k.startswith("llama.cpp")]
        if lc:
            lr, lconc = rows[lc[0]], res["concurrency"][lc[0]]
            for k in (k for k in rows if k.startswith("r1 ")):
                top = max(levels)
                lines.append(f"\n{k} / llama.cpp: batch-1 {rows[k]['tok_s'] / lr['tok_s']:.2f}x, "
                             f"{top} concurrent {res['concurrency'][k][top] / lconc[top]:.2f}x")
        users = res.get("users", {})
        if users:
            hfu = users.get("transformers")
            lines += ["", f"{USERS} different prompts (10-20 tokens, no shared prefix) in one `LLM.generate` call, "
                      "after a warm-up on other prompts; transformers: the same prompts left-padded, one `generate`:",
                      "", "| engine | tok/s | x transformers |", "|---|---|---|"]
            lines += [f"| {k} | {v:.1f} | " + (f"{v / hfu:.2f}x" if hfu else "-") + " |" for k, v in users.items()]
        for k, r in rows.items():
            if "kv_fraction_of_mha" in r:
                lines.append(f"\n{k}: KV cache {r['kv_bytes_per_token_layer']} B/token/layer vs "
                             f"{r['mha_kv_bytes_per_token_layer']} B for full MHA ({r['kv_fraction_of_mha']:.1%})"
                             + (f", MTP acceptance {r['spec_accept']:.0%}" if r.get("spec_accept") is not None else "")
                             + (f" (drafting stopped after {r['spec_stopped_after']} drafts)"
                                if r.get("spec_stopped_after") else ""))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
