"""Training data from the task families: curricula, RL prompts, cold-start SFT and pretraining text.

Records are plain dicts so they drop into a trainer (or a `datasets.Dataset`) as they are:
RL records carry the columns the rewards read (`Problem.to_columns()`); SFT records add the
target completion written from the family's worked trace.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from r1.tasks import get_task
from r1.tasks.base import Problem, levels_of
from r1.tasks.prompting import STYLES, r1_zero_prompt, sft_completion, user_message


@dataclass(frozen=True)
class Curriculum:
    """Difficulty rises linearly from `start` to `end` over training; `held_out` (above `end`)
    is the harder split kept for evaluation only."""
    start: int = 1
    end: int = 3
    held_out: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.end:
            raise ValueError(f"need 1 <= start <= end, got start={self.start}, end={self.end}")
        if self.held_out <= self.end:
            raise ValueError(f"held_out difficulty ({self.held_out}) must be above the curriculum's end ({self.end}), "
                             "or it is not held out")

    def difficulty_at(self, progress: float) -> int:
        """Difficulty for training progress in [0, 1] (0 = first step)."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        levels = self.end - self.start + 1
        return self.start + min(levels - 1, int(progress * levels))


def rl_records(task: str, n: int, seed: int = 0, split: str = "train", difficulty: int | tuple[int, ...] = 1,
               curriculum: Curriculum | None = None, style: str = "chat", p_canonical: float = 1.0,
               instruction_share: float = 1.0) -> list[dict[str, Any]]:
    """Prompts plus grading columns. With a curriculum, record i gets the difficulty for
    progress i/n (so a trainer reading in order sees problems get harder); a tuple of
    difficulties is cycled through. Questions are paraphrased (r1.tasks.phrasing) with
    probability 1 - p_canonical, and chat prompts of math-like families carry R1's math
    instruction with probability `instruction_share` (people rarely type it)."""
    import random

    from r1.tasks.phrasing import random_phrasing

    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    fam = get_task(task)
    levels = (difficulty,) if isinstance(difficulty, int) else levels_of(fam, difficulty)
    rng = random.Random(f"{task}:{seed}")
    out = []
    for i in range(n):
        d = curriculum.difficulty_at(i / max(n, 1)) if curriculum else levels[i % len(levels)]
        if d > fam.MAX_DIFFICULTY:
            raise ValueError(f"{task} has difficulties 1..{fam.MAX_DIFFICULTY}, asked for {d}")
        p = random_phrasing(fam.generate(seed + i, split, d), rng, p_canonical)
        if style == "r1_zero":
            prompt = r1_zero_prompt(p)
        else:
            prompt = user_message(p) if instruction_share >= 1 or rng.random() < instruction_share else p.prompt
        out.append({"prompt": prompt, **p.to_columns(), "difficulty": d})
    return out


def sft_records(task: str, n: int, seed: int = 0, difficulty: int | tuple[int, ...] = 1, style: str = "chat",
                think_in_prompt: bool = True, p_canonical: float = 1.0,
                instruction_share: float = 1.0) -> list[dict[str, Any]]:
    """Cold-start SFT pairs: the prompt and a completion with the worked reasoning and answer."""
    out = []
    for rec in rl_records(task, n, seed=seed, split="train", difficulty=difficulty, style=style,
                          p_canonical=p_canonical, instruction_share=instruction_share):
        p = Problem.from_columns(rec["task"], rec["question"], rec["answer"], rec["meta"], rec["problem_id"])
        rec["completion"] = sft_completion(p, get_task(task).trace(p), style=style, think_in_prompt=think_in_prompt)
        out.append(rec)
    return out


def pretraining_text(tasks: list[str], n_per_task: int, seed: int = 0, difficulties: tuple[int, ...] = (1, 2, 3)) -> Iterator[str]:
    """Question, worked reasoning and answer as running text, for pretraining mixtures. Only the
    train split is used, so held-out test problems never leak into pretraining."""
    for task in tasks:
        fam = get_task(task)
        levels = levels_of(fam, difficulties)
        for i in range(n_per_task):
            p = fam.generate(seed + i, "train", levels[i % len(levels)])
            yield f"Question: {p.prompt}\nSolution: {fam.trace(p)}\nAnswer: {p.answer}\n"


def base_corpus(tasks: list[str], n_per_task: int, seed: int = 0, difficulties: tuple[int, ...] = (1, 2, 3),
                worked_share: float = 0.35, preamble_share: float = 0.25, p_canonical: float = 0.5) -> Iterator[str]:
    """Pretraining documents for a base model that is able but not yet good: R1-Zero-style
    transcripts of train-split problems, `worked_share` of them with the family's worked
    reasoning inside <think>, the rest answering directly (empty <think>). A web-scale base has
    seen such transcripts; a tiny one must see them here to follow the R1-Zero template at all.
    `preamble_share` of the documents carry the template's full instruction text, and questions
    are paraphrased (see r1.tasks.phrasing) with probability 1 - p_canonical."""
    import random

    from r1.tasks.phrasing import random_phrasing

    if not 0 <= worked_share <= 1 or not 0 <= preamble_share <= 1:
        raise ValueError(f"worked_share and preamble_share must be in [0, 1], got {worked_share}, {preamble_share}")
    rng = random.Random(seed)
    for i in range(n_per_task):
        for task in tasks:  # interleaved, so any prefix of the corpus covers every family
            fam = get_task(task)
            levels = levels_of(fam, difficulties)
            p = fam.generate(seed + i, "train", levels[i % len(levels)])
            q = random_phrasing(p, rng, p_canonical)
            prompt = r1_zero_prompt(q, force_think=False)
            if rng.random() >= preamble_share:
                prompt = prompt[prompt.index("User: "):]
            reasoning = f"\n{fam.trace(p).strip()}\n" if rng.random() < worked_share else "\n"
            yield f"{prompt} <think>{reasoning}</think> <answer>{p.answer}</answer>"
