"""Pretraining claims on a tiny DeepSeek-V3 (MLA + MoE + MTP): FP8 vs fp32 loss gap, and expert
load balance under bias balancing, the classic auxiliary loss, and none.

    python bench/train_pretrain.py [--steps 100] [--seeds 0 1] [--output results/train_pretrain.json]

FP8 table: each seed trains the same model on the same batches in fp32, bf16 autocast and FP8
(quantize-dequantize E4M3 with 1x128 / 128x128 scaling); the gap is the relative difference of
the mean training loss over the last 10 steps, and of the final held-out loss, to fp32
(DeepSeek-V3 reports < 0.25% for FP8 vs BF16).
Balance table: max/mean tokens per expert (mean over MoE gates, over the last 20 steps) with
loss.balance = none / bias (gamma 0.001 = V3, and 0.01) / aux. Same data and seed per row.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r1.tasks.datasets import pretraining_text  # noqa: E402
from r1.train.config import load_config  # noqa: E402
from r1.train.pretrain import PretrainConfig, train  # noqa: E402
from r1.train.tokenizer_train import save_tokenizer, train_bpe  # noqa: E402

BASE = ["run.save_every=0", "run.progress=false", "run.deterministic=true", "data.tasks=[arithmetic,sorting]",
        "data.n_per_task=300", "data.seq_len=64", "data.batch_size=8", "data.eval_fraction=0.05",
        "run.eval_batches=8", "model.overrides={hidden_size: 64}", "optim.warmup_steps=5"]


def run(tmp: Path, tok: Path, name: str, steps: int, seed: int, extra: list[str]) -> tuple[list[dict], float]:
    cfg = load_config(PretrainConfig, None, [*BASE, f"run.out_dir={tmp / name}", f"run.max_steps={steps}",
                                             f"run.seed={seed}", f"run.eval_every={steps}", f"data.tokenizer={tok}",
                                             *extra])
    t = time.time()
    return train(cfg), time.time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--balance-steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--only", choices=["fp8", "balance"], default=None, help="run one of the two tables")
    ap.add_argument("--output", default="results/train_pretrain.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_pretrain_"))
    tok = tmp / "tok"
    save_tokenizer(train_bpe(pretraining_text(["arithmetic", "sorting"], 300), vocab_size=512), tok)
    out: dict = {"device": f"cpu ({platform.processor() or platform.machine()})", "steps": args.steps,
                 "balance_steps": args.balance_steps, "fp8": [], "balance": []}

    if args.only != "balance":
        fp8_table(args, tmp, tok, out)
    if args.only != "fp8":
        balance_table(args, tmp, tok, out)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(f"\nwrote {args.output}")
    return 0


def fp8_table(args, tmp: Path, tok: Path, out: dict) -> None:
    print(f"FP8 vs fp32, tiny DeepSeek-V3, {args.steps} steps, lr 1e-3 cosine")
    print(f"{'seed':>4} {'mode':>6} {'loss(last10)':>13} {'gap':>9} {'eval':>9} {'gap':>9} {'time s':>7}")
    for seed in args.seeds:
        ref = None
        for mode, extra in (("fp32", []), ("bf16", ["run.dtype=bfloat16"]), ("fp8", ["fp8.enabled=true"])):
            h, dt = run(tmp, tok, f"{mode}_{seed}", args.steps, seed, ["optim.lr=1e-3", *extra])
            loss = sum(r["lm_loss"] for r in h[-10:]) / 10
            ev = h[-1]["eval_loss"]
            ref = ref or (loss, ev)
            row = {"seed": seed, "mode": mode, "loss_last10": loss, "eval_loss": ev, "seconds": round(dt, 1),
                   "gap": (loss - ref[0]) / ref[0], "eval_gap": (ev - ref[1]) / ref[1]}
            out["fp8"].append(row)
            print(f"{seed:>4} {mode:>6} {loss:>13.5f} {row['gap']:>+9.4%} {ev:>9.5f} {row['eval_gap']:>+9.4%} {dt:>7.1f}",
                  flush=True)



def balance_table(args, tmp: Path, tok: Path, out: dict) -> None:
    print(f"\nexpert load max/mean, {args.balance_steps} steps, lr 3e-3 (mean of the last 20 steps)")
    print(f"{'balance':>14} {'max/mean':>9} {'layer1':>8} {'mtp0':>8} {'lm_loss':>8}")
    for name, extra in (("none", ["loss.balance=none"]), ("bias g=0.001", ["loss.balance=bias"]),
                        ("bias g=0.01", ["loss.balance=bias", "loss.bias_update_speed=0.01"]),
                        ("aux a=0.01", ["loss.balance=aux"])):
        h, dt = run(tmp, tok, name.replace(" ", "_"), args.balance_steps, args.seeds[0], ["optim.lr=3e-3", *extra])
        last = h[-20:]
        row = {"balance": name, "seconds": round(dt, 1), "lm_loss": h[-1]["lm_loss"]}
        for key in ("moe_imbalance", "moe_imbalance/layer1", "moe_imbalance/mtp0"):
            row[key] = sum(r[key] for r in last) / len(last)
        out["balance"].append(row)
        print(f"{name:>14} {row['moe_imbalance']:>9.3f} {row['moe_imbalance/layer1']:>8.3f} "
              f"{row['moe_imbalance/mtp0']:>8.3f} {row['lm_loss']:>8.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
