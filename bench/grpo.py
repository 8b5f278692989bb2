"""GRPO step rate and rollout throughput: r1's trainer against TRL's GRPOTrainer, in one run.

Both train the same tiny model on the same R1-Zero arithmetic prompts with the same reward
functions (r1.rewards accuracy + format), G, prompts per step, completion length and loss (TRL's
defaults: dapo, beta 0, mu 1, scale_rewards group; lr 1e-6). One step = sample G completions for
each prompt of the batch, score them, one optimizer update.

Rows, each trainer at each way of using the machine's cores: r1 synchronous at 1 and 2 torch
threads (--r1-threads), r1 with grpo.async_rollouts (a worker process samples the next step while
this one trains, --threads threads each; one update of policy lag), TRL at 1 and 2 threads
(--trl-threads). r1's ratios are taken against the fastest TRL row. r1's rollouts decode
through torch.compile (grpo.compile_rollouts; --no-compile for eager), compiled during each
trainer's first step, which is a warm-up step and not counted.

The model, per --arch (Qwen2: dense GQA; DeepSeek-V3: MLA + MoE + MTP), starts from random
weights and gets a short R1-Zero-format SFT with r1's own `r1.train.sft`, so that, like a base
model, it writes <think>/<answer> completions of varied length that end in EOS (a random
policy would run every sample to the length limit). It is saved in HF format (safetensors +
tokenizer.json); r1 loads it with r1.load_model, TRL with transformers.

The trainers alternate in rounds (every row, then every row again, ...) so load drift on a
shared machine hits all; the first step of every round is a warm-up and is not counted.
Reported: median seconds per step and steps per minute, rollout tokens/s (sampled tokens, EOS
included, over generation time), generation seconds per step, how long the step waited for its
rollout (all of the generation when synchronous), the rest of the step (training), mean
completion length.

    .venv/bin/python bench/grpo.py                        # qwen2 and deepseek_v3, 3 rounds x 4 steps
    .venv/bin/python bench/grpo.py --arch qwen2 --rounds 1 --steps 3 --sft-steps 100   # quicker
Writes results/grpo.json and prints a markdown table (copied into docs/bench-grpo.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import r1  # noqa: E402
from r1.config import preset  # noqa: E402
from r1.model import build_model  # noqa: E402
from r1.rewards import make_accuracy_reward, make_format_reward  # noqa: E402
from r1.tasks.datasets import rl_records, sft_records  # noqa: E402
from r1.train.config import ModelSpec, OptimConfig, RunConfig  # noqa: E402
from r1.train.grpo import GRPOConfig, GRPODataConfig, GRPOTrainConfig, GRPOTrainer  # noqa: E402
from r1.train.tokenizer_train import tokenizer_files, train_bpe  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_policy(folder: Path, arch: str, hidden: int, layers: int, vocab: int, sft_steps: int) -> Path:
    """A tiny policy + BPE tokenizer saved as an HF folder both trainers can load: random init,
    then (sft_steps > 0) a short R1-Zero-format SFT with r1's own trainer, so that, like a real
    base model, it writes <think>/<answer> completions of varied length that end in EOS."""
    texts = [r["prompt"] + " " + r["completion"] for t in ("arithmetic", "countdown")
             for r in sft_records(t, 400, style="r1_zero")]
    tok = train_bpe(texts, vocab_size=vocab)
    over = dict(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if arch == "deepseek_v3":  # MLA + MoE (8 routed experts, 2 active, 1 shared) + one MTP module
        over.update(moe_intermediate_size=hidden // 2, num_nextn_predict_layers=1)
    torch.manual_seed(0)
    model = build_model(preset({"qwen2": "tiny-qwen2", "deepseek_v3": "tiny-deepseek", "llama": "tiny-llama"}[arch],
                               **over))
    model.init_weights(std=0.02)
    r1.save_model(model, folder / "init", extra_files=tokenizer_files(tok))
    if not sft_steps:
        return folder / "init"
    from r1.train.losses import LossConfig
    from r1.train.sft import SFTConfig, SFTDataConfig, train as sft_train

    sft_train(SFTConfig(run=RunConfig(out_dir=str(folder / "sft"), max_steps=sft_steps, progress=False, save_every=0),
                        model=ModelSpec(init_from=str(folder / "init")),
                        data=SFTDataConfig(style="r1_zero", tasks=["arithmetic"], n_per_task=4000, difficulty=2,
                                           batch_size=16, eval_fraction=0.0),
                        optim=OptimConfig(lr=3e-3, warmup_steps=10, weight_decay=0.0), loss=LossConfig(mtp_weight=0.3)))
    return folder / "sft" / "model"


class TRLTimer:
    """Times TRL's steps (TrainerCallback) and its generate() calls (a wrapper on the model
    instance: TRL calls unwrapped_model.generate, which is the model itself on one CPU)."""

    def __init__(self, model, eos_ids: set[int]):
        self.step_ends: list[float] = []
        self.gen: list[tuple[float, int]] = []
        self.eos = eos_ids
        inner = model.generate

        def generate(*args, **kwargs):
            t = time.perf_counter()
            out = inner(*args, **kwargs)
            dt = time.perf_counter() - t
            prompt_len = (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).shape[1]
            new = out[:, prompt_len:].tolist()
            n = 0
            for row in new:  # tokens up to and including the first EOS, as r1 counts them
                for tok in row:
                    n += 1
                    if tok in self.eos:
                        break
            self.gen.append((dt, n))
            return out
        model.generate = generate

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Cb(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if not timer.step_ends or timer.step_ends[-1] is None:
                    timer.step_ends.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kw):
                timer.step_ends.append(time.perf_counter())
        return Cb()


def run_trl(folder: Path, model, tokenizer, records, rewards, a, steps: int, out: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    args = TRLConfig(output_dir=str(out), per_device_train_batch_size=a.prompts * a.G, gradient_accumulation_steps=1,
                     num_generations=a.G, max_completion_length=a.max_completion, learning_rate=1e-6, beta=0.0,
                     loss_type="dapo", scale_rewards="group", num_iterations=1, temperature=1.0, top_p=1.0, top_k=0,
                     max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
                     dataloader_num_workers=0, disable_tqdm=True, bf16=False, weight_decay=0.0, max_grad_norm=1.0,
                     lr_scheduler_type="constant")
    timer = TRLTimer(model, set(tokenizer.eos_token_ids))
    trainer = TRLTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer_hf(folder), callbacks=[timer.callback()])
    trainer.train()
    del model.generate  # drop the timing wrapper before the next round
    ends = timer.step_ends
    step_s = [b - a_ for a_, b in zip(ends, ends[1:])]
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r]
    return {"step_s": step_s, "gen": timer.gen, "wait": [g[0] for g in timer.gen], "mean_length": lengths}


def tokenizer_hf(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def run_r1(trainer: GRPOTrainer, steps: int) -> dict:
    step_s, gen, wait, lengths = [], [], [], []
    for _ in range(steps):
        t = time.perf_counter()
        m = trainer.train_step()
        step_s.append(time.perf_counter() - t)
        gen.append((m["time/rollout_s"], m["rollout/tokens_per_s"] * m["time/rollout_s"]))
        wait.append(m["time/rollout_wait_s"])
        lengths.append(m["completions/mean_length"])
    trainer.drain()  # async: the worker finishes the rollout it samples ahead now, not during TRL's round
    return {"step_s": step_s, "gen": gen, "wait": wait, "mean_length": lengths}


def summarize(runs: list[dict]) -> dict:
    """Medians over every round's steps after its first (warm-up)."""
    steps = [s for r in runs for s in r["step_s"][1:]]
    gens = [g for r in runs for g in r["gen"][1:]]
    waits = [w for r in runs for w in r["wait"][1:]]
    lengths = [x for r in runs for x in r["mean_length"][1:]]
    gen_s = [g[0] for g in gens]
    med = statistics.median(steps)
    return {"steps": len(steps), "step_s_median": med, "steps_per_min": 60.0 / med,
            "rollout_tokens_per_s": sum(g[1] for g in gens) / sum(gen_s),
            "gen_s_median": statistics.median(gen_s), "wait_s_median": statistics.median(waits),
            # the step minus the time it waited for its rollout (= generation when synchronous)
            "train_s_median": statistics.median([s - w for s, w in zip(steps, waits)]),
            "mean_completion_length": sum(lengths) / len(lengths), "step_s_all": steps}


def bench_arch(a: argparse.Namespace, arch: str, policy: str | None, tmp: Path) -> dict:
    """Build (or take) the policy of one architecture and time both trainers on it."""
    from transformers import AutoModelForCausalLM

    t_sft = time.time()
    folder = Path(policy) if policy else make_policy(tmp / arch, arch, a.hidden, a.layers, a.vocab, a.sft_steps)
    print(f"{arch}: policy ready in {time.time() - t_sft:.0f}s ({folder})", flush=True)
    records = rl_records("arithmetic", 512, seed=10_000, difficulty=2, style="r1_zero")
    rewards = [make_accuracy_reward(think_in_prompt=True), make_format_reward("r1_zero", think_in_prompt=True)]
    tok = r1.load_tokenizer(folder)
    cfg = GRPOTrainConfig(
        run=RunConfig(out_dir=str(tmp / f"r1-run-{arch}"), max_steps=10**6, progress=False, seed=0),
        model=ModelSpec(init_from=str(folder)),
        optim=OptimConfig(lr=1e-6, warmup_steps=0, schedule="constant", weight_decay=0.0, beta2=0.999, grad_clip=1.0),
        grpo=GRPOConfig(num_generations=a.G, per_device_train_batch_size=a.prompts * a.G,
                        max_completion_length=a.max_completion, loss_type="dapo", beta=0.0, num_iterations=1,
                        scale_rewards="group", temperature=1.0, compile_rollouts=a.compile_rollouts),
        data=GRPODataConfig(mode="r1_zero"))
    r1_threads = [int(x) for x in a.r1_threads.split(",")]
    # one trainer per row: (name, trainer, torch threads while it runs)
    ours = [(f"r1 {n} thread{'s' if n > 1 else ''}", GRPOTrainer(dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp / f"r1-{arch}-{n}"))), tokenizer=tok, records=records,
        reward_funcs=rewards), n) for n in r1_threads]
    if a.async_rollouts:
        acfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp / f"r1-async-{arch}")),
                                   grpo=dataclasses.replace(cfg.grpo, async_rollouts=True, rollout_threads=a.threads))
        ours.append((f"r1 async, {a.threads} + {a.threads} thread{'s' if a.threads > 1 else ''}",
                     GRPOTrainer(acfg, tokenizer=tok, records=records, reward_funcs=rewards), a.threads))
    trl_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    trl_threads = [int(x) for x in a.trl_threads.split(",")]
    load0 = os.getloadavg()
    runs: dict[str, list[dict]] = {}
    t0 = time.time()
    try:
        for rnd in range(a.rounds):
            for name, trainer, n in ours:
                torch.set_num_threads(n)
                runs.setdefault(name, []).append(run_r1(trainer, a.steps))
                torch.set_num_threads(a.threads)
                print(f"{arch} round {rnd + 1}: {name} s/step {['%.2f' % x for x in runs[name][-1]['step_s']]}",
                      flush=True)
            for n in trl_threads:
                name = f"TRL {n} thread{'s' if n > 1 else ''}"
                torch.set_num_threads(n)
                runs.setdefault(name, []).append(run_trl(folder, trl_model, tok, records, rewards, a, a.steps,
                                                         tmp / f"trl-{arch}-{rnd}-{n}"))
                torch.set_num_threads(a.threads)
                print(f"{arch} round {rnd + 1}: {name} s/step {['%.2f' % x for x in runs[name][-1]['step_s']]}",
                      flush=True)
    finally:
        for _, trainer, _ in ours:
            trainer.close()
    summary = {name: summarize(r) for name, r in runs.items()}
    best_trl = max((k for k in summary if k.startswith("TRL")), key=lambda k: summary[k]["steps_per_min"])
    trl_s = summary[best_trl]
    c = ours[0][1].policy.config
    return {
        "load_average_start": load0, "load_average_end": os.getloadavg(), "wall_s": time.time() - t0,
        "setup": {"arch": arch, "hidden": c.hidden_size, "layers": c.num_hidden_layers, "vocab": tok.vocab_size,
                  "experts": (f"{c.n_routed_experts} routed ({c.num_experts_per_tok} active) + "
                              f"{c.n_shared_experts} shared") if c.n_routed_experts else None,
                  "params": sum(p.numel() for p in ours[0][1].policy.parameters()), "policy": policy or "built",
                  "sft_steps": 0 if policy else a.sft_steps,
                  "prompt_tokens": statistics.mean(len(tok.encode(r["prompt"])) for r in records[:64])},
        "trainers": summary, "best_trl": best_trl,
        # each r1 row against the fastest TRL row
        "speedup_steps": {k: v["steps_per_min"] / trl_s["steps_per_min"] for k, v in summary.items()
                          if not k.startswith("TRL")},
        "speedup_rollout": {k: v["rollout_tokens_per_s"] / trl_s["rollout_tokens_per_s"] for k, v in summary.items()
                            if not k.startswith("TRL")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="steps per system per round (the first is warm-up)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--G", type=int, default=8, help="num_generations")
    ap.add_argument("--max-completion", type=int, default=192)
    ap.add_argument("--arch", default="qwen2,deepseek_v3", help="comma-separated: qwen2, llama, deepseek_v3")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--policy", default=None,
                    help="use this HF folder as the policy (one --arch) instead of building one")
    ap.add_argument("--sft-steps", type=int, default=300,
                    help="R1-Zero-format SFT steps before GRPO (0 = random policy)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the async row's trainer and of its worker each, and for the policy build")
    ap.add_argument("--no-compile", dest="compile_rollouts", action="store_false",
                    help="r1 rollouts decode eagerly (default: grpo.compile_rollouts, compiled on each trainer's "
                         "first rollout, a warm-up step)")
    ap.add_argument("--no-async", dest="async_rollouts", action="store_false",
                    help="leave out the r1 row with grpo.async_rollouts (a worker process samples the next step "
                         "while this one trains, with --threads threads of its own)")
    ap.add_argument("--r1-threads", default="1,2", help="r1 rows (synchronous), one per torch thread count")
    ap.add_argument("--trl-threads", default="1,2",
                    help="TRL rows, one per torch thread count (r1's ratio is taken against the fastest)")
    ap.add_argument("--output", default=str(ROOT / "results" / "grpo.json"))
    a = ap.parse_args()
    archs = [x.strip() for x in a.arch.split(",") if x.strip()]
    if a.steps < 2:
        ap.error("--steps must be >= 2 (the first step of each round is a warm-up)")
    if any(x not in ("qwen2", "llama", "deepseek_v3") for x in archs) or (a.policy and len(archs) != 1):
        ap.error("--arch takes qwen2, llama, deepseek_v3; --policy goes with exactly one --arch")
    torch.set_num_threads(a.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import trl

    tmp = Path(tempfile.mkdtemp(prefix="r1-bench-grpo-"))
    t0 = time.time()
    runs = [bench_arch(a, arch, a.policy, tmp) for arch in archs]
    result = {
        "device": f"{cpu_name()}, {os.cpu_count()} cores (torch threads: see each row)",
        "wall_s": time.time() - t0,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "workload": {"task": "arithmetic difficulty 2, R1-Zero template",
                     "rewards": ["accuracy_reward", "format_reward"],
                     "num_generations": a.G, "prompts_per_step": a.prompts, "max_completion_length": a.max_completion,
                     "loss_type": "dapo", "beta": 0.0, "num_iterations": 1, "scale_rewards": "group",
                     "temperature": 1.0, "lr": 1e-6, "rounds": a.rounds, "steps_per_round": a.steps},
        "runs": runs,
    }
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(result, indent=2))
    print(f"\nGRPO on {result['device']}; G={a.G}, {a.prompts} prompts/step, max_completion_length="
          f"{a.max_completion}; median s/step over {a.rounds} rounds x {a.steps - 1} timed steps per trainer\n")
    print("| model | trainer | s/step | steps/min | rollout tokens/s | generation s/step | waited for rollout "
          "s/step | rest of step s | mean completion length | load avg |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        st = run["setup"]
        model = f"{st['arch']} {st['params'] / 1e6:.2f}M"
        load = f"{run['load_average_start'][0]:.1f}-{run['load_average_end'][0]:.1f}"
        for name, s in run["trainers"].items():
            label = name.replace("TRL", f"TRL {trl.__version__},")
            print(f"| {model} | {label} | {s['step_s_median']:.2f} | {s['steps_per_min']:.1f} | "
                  f"{s['rollout_tokens_per_s']:.0f} | {s['gen_s_median']:.2f} | {s['wait_s_median']:.2f} | "
                  f"{s['train_s_median']:.2f} | {s['mean_completion_length']:.1f} | {load} |")
    for run in runs:
        for name, x in run["speedup_steps"].items():
            print(f"{run['setup']['arch']}: {name} / {run['best_trl']} = {x:.2f}x steps/min, "
                  f"{run['speedup_rollout'][name]:.2f}x rollout tokens/s")
    print(f"wrote {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
