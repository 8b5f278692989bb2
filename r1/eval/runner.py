"""The evaluation loop: problems -> prompts (R1 usage rules) -> k samples -> graded records -> metrics.

Defaults follow the R1 paper's evaluation setup: temperature 0.6, top-p 0.95, k samples per
question, no system prompt, the math instruction for math-like tasks, and generation forced
to start inside `<think>`.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1.chat.r1_template import THINK_CLOSE
from r1.chat.reasoning import close_reasoning
from r1.eval.backend import Backend, Generation, as_generation, describe
from r1.eval.metrics import k_ladder, majority_vote, mean, pass_at_k, stderr
from r1.rewards.format import is_formatted
from r1.rewards.language import LANGUAGE_SCRIPTS, language_share
from r1.tasks import generate_many, get_task, grade_all
from r1.tasks.base import SPLITS, Problem, answer_key
from r1.tasks.extract import Parsed, parse_completion
from r1.tasks.prompting import STYLES, r1_zero_prompt, user_message

MIN_REASONING_WORDS = 3  # a think block with fewer words counts as answering directly
DEFAULT_LIMIT = 100  # generated tasks are unbounded; this many problems unless --limit says otherwise


@dataclass(frozen=True)
class EvalConfig:
    task: str  # a registered family name, or a path to a JSONL file of math problems
    k: int = 16  # samples per problem
    limit: int | None = None  # problems to evaluate (None: DEFAULT_LIMIT generated, or the whole file)
    seed: int = 0
    split: str = "test"
    difficulty: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    # None: DEFAULT_MAX_TOKENS, capped to what the backend's context leaves after the longest prompt
    # (as vLLM does for an unset max_tokens); a number is the budget as asked, an error if it does not fit
    max_tokens: int | None = None
    template: str = "chat"  # "chat": the model's chat template; "r1_zero": the R1-Zero plain-text template
    force_think: bool = True  # end the prompt in <think> so every sample starts reasoning
    system_prompt: str | None = None  # R1 recommends none; kept for models that need one
    batch_size: int = 8  # problems per backend call
    language: str = "en"  # target language for the consistency metric
    language_threshold: float = 0.95  # a sample is language-consistent at or above this share
    question_field: str | None = None  # JSONL field names (auto-detected when None)
    answer_field: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1 samples per problem, got {self.k}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for the default), got {self.limit}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.template not in STYLES:
            raise ValueError(f"template must be one of {STYLES}, got {self.template!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.language not in LANGUAGE_SCRIPTS:
            raise ValueError(f"language must be one of {', '.join(sorted(LANGUAGE_SCRIPTS))}, got {self.language!r}")
        if not 0 < self.language_threshold <= 1:
            raise ValueError(f"language_threshold must be in (0, 1], got {self.language_threshold}")
        if not is_file_task(self.task):
            get_task(self.task)  # raises with the list of known tasks
            if self.task == "math":
                raise ValueError("task 'math' has no generator; pass a JSONL file of problems as --task FILE.jsonl")


def is_file_task(task: str) -> bool:
    return task.endswith(".jsonl") or Path(task).is_file()


def load_problems(cfg: EvalConfig) -> list[Problem]:
    if is_file_task(cfg.task):
        from r1.tasks.mathqa import load_jsonl

        return load_jsonl(cfg.task, cfg.question_field, cfg.answer_field, limit=cfg.limit)
    family = get_task(cfg.task)
    return generate_many(family, cfg.limit or DEFAULT_LIMIT, seed=cfg.seed, split=cfg.split, difficulty=cfg.difficulty)


def render_prompt(problem: Problem, cfg: EvalConfig, backend: Backend) -> str:
    if cfg.template == "r1_zero":
        # A plain-text template gets no BOS from a chat template; add the one the model was trained
        # with (pretraining packs documents after BOS, and GRPO's r1_zero prompts start with it).
        bos = getattr(getattr(backend, "tokenizer", None), "bos_token", None) or ""
        return bos + r1_zero_prompt(problem, force_think=cfg.force_think)
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    messages += problem.meta.get("history", [])  # earlier turns of a chat (r1.tasks.conversation)
    messages.append({"role": "user", "content": user_message(problem)})
    text = backend.render(messages)
    if problem.meta.get("thinking") is False:  # the no-thinking mode, as the server renders it
        return close_reasoning(text) if opens_thinking(text) else text
    # R1's template already ends its generation prompt in "<think>\n"; others need it added.
    if cfg.force_think and not opens_thinking(text):
        text += "<think>\n"
    return text


def opens_thinking(prompt: str) -> bool:
    """Whether the prompt already opened the reasoning (forced, or by the model's own template,
    as R1's does), so completions start inside <think>."""
    return prompt.rstrip().endswith("<think>")


def grade_samples(gens: list[Generation], problem: Problem, cfg: EvalConfig, backend: Backend,
                  think_in_prompt: bool) -> list[dict[str, Any]]:
    """One record per sample; the k answers are graded in one call (r1.tasks.grade_all)."""
    parsed = [parse_completion(g.text, think_in_prompt) for g in gens]
    correct = grade_all([p.answer for p in parsed], [problem] * len(gens))
    return [grade_sample(g, p, ok, problem, cfg, backend, think_in_prompt) for g, p, ok in zip(gens, parsed, correct)]


def grade_sample(gen: Generation, parsed: Parsed, correct: bool, problem: Problem, cfg: EvalConfig, backend: Backend,
                 think_in_prompt: bool) -> dict[str, Any]:
    family = get_task(problem.task)
    answer = parsed.answer
    key = answer_key(family, answer, problem) if answer is not None else None
    reasoning = parsed.reasoning if parsed.reasoning is not None else gen.text
    share = language_share(reasoning, cfg.language)
    n_tokens = gen.num_tokens if gen.num_tokens is not None else backend.count_tokens(gen.text)
    return {
        "text": gen.text,
        "answer": answer,
        "answer_key": key,
        "correct": correct,
        "formatted": is_formatted(gen.text, cfg.template, think_in_prompt),
        "language_share": share,
        "language_consistent": share is None or share >= cfg.language_threshold,
        # answered after actual reasoning, not an empty (or near-empty) think block
        "reasoned": parsed.reasoning is not None and len(parsed.reasoning.split()) >= MIN_REASONING_WORDS,
        # families that can tell: the reasoning worked on the question's own numbers (None: not known)
        "followed_question": (family.operands_followed(parsed.reasoning, problem)
                              if hasattr(family, "operands_followed") and parsed.reasoning else None),
        # the no-thinking mode leaked: a </think> (and the reasoning before it) in the answer
        "leaked_reasoning": not think_in_prompt and THINK_CLOSE in gen.text,
        "response_tokens": n_tokens,
        "reasoning_tokens": backend.count_tokens(reasoning) if reasoning else 0,
        "finish_reason": gen.finish_reason,
    }


def problem_record(problem: Problem, prompt: str, samples: list[dict[str, Any]], k: int) -> dict[str, Any]:
    c = sum(s["correct"] for s in samples)
    _, idx = majority_vote([s["answer_key"] for s in samples])
    return {
        "id": problem.id,
        "task": problem.task,
        "question": problem.prompt,
        "truth": problem.answer,
        "prompt": prompt,
        "n_correct": c,
        "pass@1": c / k,
        "pass@k": pass_at_k(k, c, k),
        "majority_answer": None if idx is None else samples[idx]["answer"],
        "cons@k": bool(idx is not None and samples[idx]["correct"]),
        "samples": samples,
    }


def _share_correct(samples: list[dict[str, Any]]) -> float | None:
    return mean([float(s["correct"]) for s in samples]) if samples else None


def summarize(records: list[dict[str, Any]], k: int) -> dict[str, Any]:
    samples = [s for r in records for s in r["samples"]]
    p1 = [r["pass@1"] for r in records]
    finished = [s for s in samples if s["finish_reason"] is not None]
    shares = [s["language_share"] for s in samples if s["language_share"] is not None]
    return {
        "k": k,
        "n_problems": len(records),
        "n_samples": len(samples),
        "pass@1": mean(p1),
        "pass@1_stderr": stderr(p1),
        "cons@k": mean([float(r["cons@k"]) for r in records]),
        "pass@k": mean([r["pass@k"] for r in records]),
        # The unbiased estimator at every power of two up to k (pass@k above is its j = k case).
        "pass@j": {str(j): mean([pass_at_k(k, r["n_correct"], j) for r in records]) for j in k_ladder(k)},
        "answer_rate": mean([float(s["answer"] is not None) for s in samples]),
        "format_rate": mean([float(s["formatted"]) for s in samples]),
        "language_consistency_rate": mean([float(s["language_consistent"]) for s in samples]),
        "mean_language_share": mean(shares),
        "mean_response_tokens": mean([s["response_tokens"] for s in samples]),
        "mean_reasoning_tokens": mean([s["reasoning_tokens"] for s in samples]),
        "mean_response_tokens_correct": mean([s["response_tokens"] for s in samples if s["correct"]]),
        "mean_response_tokens_wrong": mean([s["response_tokens"] for s in samples if not s["correct"]]),
        # How often the model reasons, and whether reasoning is what makes it right: accuracy of
        # the samples that reasoned vs. those that answered directly (None when there are none).
        "reasoning_rate": mean([float(s.get("reasoned", False)) for s in samples]),
        "accuracy_reasoned": _share_correct([s for s in samples if s.get("reasoned")]),
        "accuracy_direct": _share_correct([s for s in samples if not s.get("reasoned")]),
        # reasoned about other numbers than the question's (a misread, not a slip in the working)
        "misread_rate": mean([float(s["followed_question"] is False) for s in samples
                              if s.get("followed_question") is not None]),
        "leak_rate": mean([float(s.get("leaked_reasoning", False)) for s in samples]),
        "truncation_rate": mean([float(s["finish_reason"] == "length") for s in finished]) if finished else None,
    }


def run_eval(backend: Backend, cfg: EvalConfig, model_name: str | None = None, progress: bool = False,
             on_batch: Callable[[int, int], None] | None = None,
             problems: list[Problem] | None = None) -> dict[str, Any]:
    """Evaluate and return the result document (what `r1 eval --output` writes as JSON).
    `problems` replaces the ones `cfg` would generate (e.g. paraphrased, or a mix of families)."""
    t0 = time.time()
    problems = load_problems(cfg) if problems is None else problems
    prompts = [render_prompt(p, cfg, backend) for p in problems]
    cfg, budget_note = _resolve_budget(cfg, backend, prompts)
    records: list[dict[str, Any]] = []
    bar = _progress(progress, len(problems), cfg)
    try:
        for start in range(0, len(problems), cfg.batch_size):
            batch = problems[start:start + cfg.batch_size]
            outs = backend.complete(prompts[start:start + len(batch)], n=cfg.k, temperature=cfg.temperature,
                                    top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed + start * cfg.k)
            if len(outs) != len(batch) or any(len(o) != cfg.k for o in outs):
                raise RuntimeError(f"backend returned {[len(o) for o in outs]} completions for {len(batch)} prompts x k={cfg.k}")
            for i, (problem, gens) in enumerate(zip(batch, outs)):
                prompt = prompts[start + i]
                samples = grade_samples([as_generation(g) for g in gens], problem, cfg, backend, opens_thinking(prompt))
                records.append(problem_record(problem, prompt, samples, cfg.k))
            if bar is not None:
                bar[0].update(bar[1], advance=len(batch),
                              description=f"{cfg.task} pass@1 {mean([r['pass@1'] for r in records]):.3f}")
            if on_batch is not None:
                on_batch(len(records), len(problems))
    finally:
        if bar is not None:
            bar[0].stop()
    return {
        "model": model_name or describe(backend),
        "task": cfg.task,
        "config": dataclasses.asdict(cfg),
        **({"max_tokens_note": budget_note} if budget_note else {}),
        "metrics": summarize(records, cfg.k),
        "elapsed_s": round(time.time() - t0, 3),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "problems": records,
    }


DEFAULT_MAX_TOKENS = 1024


def _resolve_budget(cfg: EvalConfig, backend: Backend, prompts: list[str]) -> tuple[EvalConfig, str | None]:
    """cfg with max_tokens set: as given, or the default capped to the context left after the
    longest prompt (then the note says so, for the report)."""
    if cfg.max_tokens is not None:
        return cfg, None
    context = getattr(backend, "max_model_len", None)
    if context is None or not prompts:
        return dataclasses.replace(cfg, max_tokens=DEFAULT_MAX_TOKENS), None
    longest = max(backend.count_tokens(p) for p in prompts)
    room = context - longest
    if room < 1:
        raise ValueError(f"the longest prompt ({longest} tokens) fills the model's context of {context} tokens")
    if room >= DEFAULT_MAX_TOKENS:
        return dataclasses.replace(cfg, max_tokens=DEFAULT_MAX_TOKENS), None
    return (dataclasses.replace(cfg, max_tokens=room),
            f"max_tokens {room}: the default {DEFAULT_MAX_TOKENS} capped to the {context}-token context "
            f"less the longest prompt ({longest} tokens)")


def _progress(enabled: bool, total: int, cfg: EvalConfig):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    prog.start()
    return prog, prog.add_task(f"{cfg.task} (k={cfg.k})", total=total)
