"""One GRPO rollout (G samples of each of a few prompts), r1's engine against transformers, in one run.

The rollout of bench/grpo.py on its own: the same policy (built by bench/grpo.py's `make_policy`,
or --policy), the same prompts (arithmetic, R1-Zero template), G=8 samples of each of 4 prompts,
up to 192 tokens, temperature 1, at one torch thread -- what GRPO's asynchronous rollout worker
runs. Rows:

- r1, decode attention "torch": paged KV gathered per step, then SDPA;
- r1, decode attention "auto": the native kernel reading the paged cache in place
  (r1/engine/paged_attention.py) where it applies (GQA models; MLA models keep their own path);
- transformers `generate` (num_return_sequences=G, do_sample, the same max_new_tokens), the peer.

The rows alternate rollout by rollout over the same prompt batches and seeds, so machine drift
hits all of them; reported are the median seconds per rollout, tokens per second and each r1
row's paired ratio against the torch path (the median of per-batch ratios) and against
transformers.

    .venv/bin/python bench/rollout.py --arch qwen2 --policy /path/to/hf/folder
Writes results/rollout.json and prints a markdown table (docs/bench-grpo.md).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import r1  # noqa: E402
from r1.engine.paged_attention import native_unavailable  # noqa: E402
from r1.tasks.datasets import rl_records  # noqa: E402
from r1.train.rollout import generate_groups  # noqa: E402


def r1_rollout(model, tok, prompts, G, max_new, seed, decode_attention):
    ro = generate_groups(model, tok, prompts, [{}] * len(prompts), G, max_new, temperature=1.0,
                         seeds=[seed + i for i in range(len(prompts))], logprobs=True,
                         decode_attention=decode_attention)
    return ro.gen_seconds, ro.gen_tokens, ro.completion_ids


def hf_rollout(hf, prompts, G, max_new, seed, eos, pad):
    torch.manual_seed(seed)
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    t = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                          max_new_tokens=max_new, num_return_sequences=G, eos_token_id=eos, pad_token_id=pad)
    dt = time.perf_counter() - t
    new = out[:, width:]
    tokens = 0
    for row in new.tolist():  # sampled tokens up to and including the first EOS
        tokens += next((i + 1 for i, x in enumerate(row) if x == eos), len(row))
    return dt, tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="qwen2", choices=["qwen2", "llama", "deepseek_v3"])
    ap.add_argument("--policy", default=None, help="HF folder of the policy (default: build one as bench/grpo.py does)")
    ap.add_argument("--batches", type=int, default=8, help="prompt batches (rollouts per row), after one warm-up")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--max-completion", type=int, default=192)
    ap.add_argument("--no-hf", dest="hf", action="store_false", help="leave out the transformers row")
    ap.add_argument("--output", default=str(ROOT / "results" / "rollout.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    from grpo import cpu_name, make_policy

    folder = Path(a.policy) if a.policy else make_policy(Path(tempfile.mkdtemp(prefix="r1-bench-rollout-")), a.arch,
                                                         128, 4, 1024, 300)
    model, tok = r1.load_model(folder), r1.load_tokenizer(folder)
    hf = None
    if a.hf:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    records = rl_records("arithmetic", 512, seed=10_000, difficulty=2, style="r1_zero")
    rows = ["r1 torch", "r1 auto"] + (["transformers"] if hf is not None else [])
    res: dict[str, list[tuple[float, int]]] = {r: [] for r in rows}
    same = 0
    for batch in range(a.batches + 1):
        recs = records[batch * a.prompts:(batch + 1) * a.prompts]
        prompts = [tok.encode(r["prompt"]) for r in recs]
        seed = 1000 * batch
        dt_t, n_t, ids_t = r1_rollout(model, tok, prompts, a.G, a.max_completion, seed, "torch")
        dt_a, n_a, ids_a = r1_rollout(model, tok, prompts, a.G, a.max_completion, seed, "auto")
        hf_row = hf_rollout(hf, prompts, a.G, a.max_completion, seed, tok.eos_token_id, tok.pad_token_id) if hf else None
        if batch == 0:
            continue  # warm-up
        same += ids_t == ids_a
        res["r1 torch"].append((dt_t, n_t))
        res["r1 auto"].append((dt_a, n_a))
        if hf_row:
            res["transformers"].append(hf_row)
        print(f"batch {batch}: " + ", ".join(f"{r} {res[r][-1][0]:.3f}s" for r in rows), flush=True)
    summary = {r: {"s_median": statistics.median(x[0] for x in v),
                   "tokens_per_s": sum(x[1] for x in v) / sum(x[0] for x in v)} for r, v in res.items()}
    paired = statistics.median(a_[0] / t_[0] for a_, t_ in zip(res["r1 auto"], res["r1 torch"]))
    result = {"device": f"{cpu_name()}, 1 torch thread", "arch": a.arch, "policy": str(folder),
              "kernel": native_unavailable() or "built", "prompts": a.prompts, "G": a.G,
              "max_completion": a.max_completion, "batches": a.batches, "rows": summary,
              "auto_over_torch_paired_time_ratio": paired, "identical_samples_batches": same,
              "load_average": os.getloadavg()}
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=2))
    print(f"\n{a.arch} rollout, {a.prompts} prompts x G={a.G}, <= {a.max_completion} tokens, T=1; "
          f"{result['device']}; kernel: {result['kernel']}\n")
    print("| row | s/rollout (median) | tokens/s | vs transformers (tokens/s) |")
    print("|---|---:|---:|---:|")
    for r, s in summary.items():
        vs = f"{s['tokens_per_s'] / summary['transformers']['tokens_per_s']:.2f}x" if hf else "-"
        print(f"| {r} | {s['s_median']:.3f} | {s['tokens_per_s']:.0f} | {vs} |")
    print(f"\nr1 auto / r1 torch time per rollout, median of paired batches: {paired:.3f}; "
          f"identical samples in {same}/{a.batches} batches (the rest diverge by float rounding at T=1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
