"""Rejection sampling (R1 stage 3): sample several completions per training prompt from an RL
checkpoint, keep the good ones, write them as chat SFT records.

A sample is kept when it is correct (the task's grader, as in evaluation and rewards), in the
format, in one language, not repetitive, not cut off, and not a duplicate of one already kept
for its prompt; at most `keep_per_prompt` per prompt. Every other sample is counted under the
first rule it breaks, so the report says how many were dropped and why.

R1-Zero outputs (`template: r1_zero`, `<think>…</think> <answer>…</answer>`) are cleaned into
the chat format on the way: reasoning kept, the answer rewritten as the chat summary. That is
how the cold-start set reuses "cleaned R1-Zero outputs".

Generation goes through the evaluation harness on the *train* split, so sampling, grading and
the per-sample checks are the ones `r1 eval` uses.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1.train.config import TrainConfigError

DESCRIPTION = "rejection sampling: sample, keep correct/formatted/single-language samples, write SFT records"
REASONS = ("truncated", "wrong", "format", "language", "repetitive", "duplicate", "surplus")


@dataclass
class RejectionConfig:
    model: str = ""  # checkpoint folder to sample from
    out_dir: str = "runs/rejection"  # writes records.jsonl and report.json
    tasks: list[str] = field(default_factory=lambda: ["arithmetic"])
    n_per_task: int = 200  # prompts per family (train split)
    difficulties: list[int] = field(default_factory=lambda: [1, 2])
    seed: int = 1000  # problem seed; keep it apart from the RL prompts' to sample fresh problems
    samples: int = 4  # completions per prompt
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 384
    template: str = "chat"  # chat, or r1_zero (outputs cleaned into the chat format)
    p_canonical: float = 0.5  # share of prompts in the generator's own words
    instruction_share: float = 0.5  # chat prompts carrying R1's math instruction
    keep_per_prompt: int = 1
    max_repetition: float = 0.2  # drop samples whose reasoning repeats more 3-grams than this share
    language: str = "en"
    batch_size: int = 64  # prompts per engine call

    def __post_init__(self) -> None:
        if self.template not in ("chat", "r1_zero"):
            raise TrainConfigError(f"rejection.template={self.template!r}: choose chat or r1_zero")
        for name in ("n_per_task", "samples", "max_tokens", "keep_per_prompt", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"rejection.{name} must be >= 1, got {getattr(self, name)}")
        if not self.tasks:
            raise TrainConfigError("rejection.tasks is empty; name the task families to sample")


def _problems(cfg: RejectionConfig, task: str) -> list:
    from r1.tasks import get_task
    from r1.tasks.base import levels_of
    from r1.tasks.phrasing import random_phrasing

    fam = get_task(task)
    levels = levels_of(fam, cfg.difficulties)
    rng = random.Random(f"rejection:{task}:{cfg.seed}")
    out = []
    for i in range(cfg.n_per_task):
        p = fam.generate(cfg.seed + i, "train", levels[i % len(levels)])
        out.append(random_phrasing(p, rng, cfg.p_canonical))
    return out


def verdict(sample: dict[str, Any], kept_texts: set[str], n_kept: int, cfg: RejectionConfig) -> str | None:
    """Why `sample` is dropped (one of REASONS), or None to keep it."""
    from r1.rewards.shaping import repetition_fraction
    from r1.tasks.extract import parse_completion

    if sample["finish_reason"] == "length":
        return "truncated"
    if not sample["correct"]:
        return "wrong"
    if not sample["formatted"]:
        return "format"
    if not sample["language_consistent"]:
        return "language"
    reasoning = parse_completion(sample["text"], True).reasoning or ""
    if repetition_fraction(reasoning) > cfg.max_repetition:
        return "repetitive"
    if reasoning.strip() in kept_texts:
        return "duplicate"
    if n_kept >= cfg.keep_per_prompt:
        return "surplus"
    return None


def chat_record(problem, reasoning: str, user_text: str) -> dict[str, Any]:
    """A kept sample as a chat SFT record; the answer summary is the canonical one (the sample
    was graded correct, so its answer equals the truth up to the grader's equivalence)."""
    from r1.tasks.prompting import sft_completion

    completion = sft_completion(problem, reasoning, style="chat", think_in_prompt=False)
    return {"messages": [{"role": "user", "content": user_text}, {"role": "assistant", "content": completion}],
            **problem.to_columns()}


def run(cfg: RejectionConfig, backend=None) -> dict[str, Any]:
    """Sample, filter, write `records.jsonl` and `report.json` into cfg.out_dir; returns the report."""
    import time

    from r1.eval import EngineBackend, EvalConfig, run_eval
    from r1.tasks.extract import parse_completion
    from r1.tasks.prompting import user_message
    from r1.fileio import atomic_write_text

    if backend is None:
        if not cfg.model:
            raise TrainConfigError("rejection.model: give the checkpoint folder to sample from")
        backend = EngineBackend(cfg.model, batch_size=cfg.batch_size * cfg.samples)
    t0 = time.time()
    rng = random.Random(cfg.seed)
    records, per_task = [], {}
    for task in cfg.tasks:
        problems = _problems(cfg, task)
        ecfg = EvalConfig(task=task, k=cfg.samples, split="train", temperature=cfg.temperature, top_p=cfg.top_p,
                          max_tokens=cfg.max_tokens, template=cfg.template, batch_size=cfg.batch_size,
                          language=cfg.language, seed=cfg.seed)
        result = run_eval(backend, ecfg, problems=problems)
        reasons: Counter = Counter()
        for prob, rec in zip(problems, result["problems"]):
            kept: set[str] = set()
            for s in rec["samples"]:
                why = verdict(s, kept, len(kept), cfg)
                if why is not None:
                    reasons[why] += 1
                    continue
                reasoning = parse_completion(s["text"], True).reasoning.strip()
                kept.add(reasoning)
                with_instruction = rng.random() < cfg.instruction_share
                records.append(chat_record(prob, reasoning, user_message(prob) if with_instruction else prob.prompt))
            reasons["kept"] += len(kept)
        n = len(problems) * cfg.samples
        per_task[task] = {"prompts": len(problems), "samples": n, "kept": reasons["kept"],
                          "prompts_with_a_kept_sample": sum(1 for r in result["problems"] if r["n_correct"] > 0),
                          "dropped": {r: reasons[r] for r in REASONS}, "sample_accuracy": result["metrics"]["pass@1"]}
    random.Random(cfg.seed).shuffle(records)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    total = Counter()
    for t in per_task.values():
        total.update({"samples": t["samples"], "kept": t["kept"], **{f"dropped_{r}": n for r, n in t["dropped"].items()}})
    report = {"model": getattr(backend, "path", None), "template": cfg.template, "records": len(records),
              "totals": dict(total), "per_task": per_task, "elapsed_s": round(time.time() - t0, 1)}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report
