"""The shared vocabulary of task families: `Problem`, split assignment, the family protocol.

Every family module (arithmetic.py, countdown.py, ...) exposes the same small API:

    NAME: str                     registry name, also `Problem.task`
    MATH_LIKE: bool               whether R1's math instruction ("... within \\boxed{}") applies
    MAX_DIFFICULTY: int           difficulties run 1..MAX_DIFFICULTY; a curriculum trains on the
                                  low ones and the higher ones are the held-out harder split
    generate(seed, split="train", difficulty=1) -> Problem
    grade(answer, problem) -> bool          `answer` is the extracted final answer text
    answer_key(answer, problem) -> str|None canonical form used to vote for cons@k
    trace(problem) -> str                   a worked, step-by-step solution (cold-start SFT data)

Train and test are disjoint by construction: a problem's split is a pure function of its
content (a hash of a canonical key), so no seed, difficulty or sample count can ever put the
same problem in both. Generation draws candidates from a seeded RNG until one lands in the
requested split (rejection sampling; ~1/TEST_FRACTION draws for the test split).
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, TypeVar, runtime_checkable

SPLITS: tuple[str, ...] = ("train", "test")
# One problem in eight goes to test. Small enough that training sees most of the space, large
# enough that the rejection sampler for `test` needs few draws (8 on average).
TEST_BUCKETS = 8
# A family whose problem space is so small that this many draws never hit the requested
# split is a bug in the family, not bad luck: fail loudly instead of looping forever.
MAX_DRAWS = 10_000


@dataclass(frozen=True)
class Problem:
    task: str  # registry name of the family, e.g. "arithmetic"
    prompt: str  # the question in plain words, without any template or instruction
    answer: str  # canonical ground truth, as a grader accepts it
    meta: dict[str, Any] = field(default_factory=dict)  # what the grader needs beyond `answer`
    id: str = ""  # stable identifier (family key); used to name problems in reports

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise ValueError("Problem.task must be a non-empty family name such as 'arithmetic'")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"Problem.prompt must be non-empty question text (task {self.task!r})")
        if not isinstance(self.answer, str):
            raise TypeError(f"Problem.answer must be a string, got {type(self.answer).__name__}; "
                            "store numbers as their canonical text, e.g. '42' or '-1/2'")
        if not isinstance(self.meta, dict):
            raise TypeError("Problem.meta must be a dict of JSON-serialisable values")

    def to_columns(self) -> dict[str, Any]:
        """The dataset columns a TRL-style reward function receives as keyword arguments."""
        return {"task": self.task, "question": self.prompt, "answer": self.answer,
                "meta": dict(self.meta), "problem_id": self.id}

    @classmethod
    def from_columns(cls, task: str, question: str, answer: str, meta: dict | None = None,
                     problem_id: str = "") -> "Problem":
        return cls(task=task, prompt=question, answer=answer, meta=dict(meta or {}), id=problem_id)


@runtime_checkable
class TaskFamily(Protocol):
    NAME: str
    MATH_LIKE: bool
    MAX_DIFFICULTY: int

    def generate(self, seed: int, split: str = "train", difficulty: int = 1) -> Problem: ...
    def grade(self, answer: str, problem: Problem) -> bool: ...
    def answer_key(self, answer: str, problem: Problem) -> str | None: ...
    def trace(self, problem: Problem) -> str: ...


def split_of(task: str, key: str) -> str:
    """The split a problem belongs to, from its canonical content key alone."""
    digest = hashlib.blake2b(f"{task}\x1f{key}".encode(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "little") % TEST_BUCKETS == 0 else "train"


def check_args(task: str, seed: int, split: str, difficulty: int, max_difficulty: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"{task}: split must be one of {SPLITS}, got {split!r}")
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or not 1 <= difficulty <= max_difficulty:
        raise ValueError(f"{task}: difficulty must be an int in 1..{max_difficulty}, got {difficulty!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{task}: seed must be an int, got {type(seed).__name__}")


T = TypeVar("T")


def draw_in_split(task: str, seed: int, split: str, difficulty: int,
                  draw: Callable[[random.Random], tuple[str, T]]) -> tuple[str, T]:
    """Draw candidates `(key, payload)` until one whose key hashes into `split`.

    The RNG is seeded from a string (hashed with SHA-512 by `random`), so results do not
    depend on PYTHONHASHSEED, the platform or the order in which problems are requested.
    """
    rng = random.Random(f"{task}|{split}|{difficulty}|{seed}")
    for _ in range(MAX_DRAWS):
        key, payload = draw(rng)
        if split_of(task, key) == split:
            return key, payload
    raise RuntimeError(f"{task}: no {split} problem found in {MAX_DRAWS} draws at difficulty "
                       f"{difficulty}; the problem space is too small for a train/test split")


def levels_of(family: Any, difficulties: Sequence[int]) -> tuple[int, ...]:
    """The levels among `difficulties` that `family` has. One list can then serve several families
    (`[1, 2]` for arithmetic and the one-level mixed_arithmetic); a family with none of them is an error."""
    levels = tuple(d for d in difficulties if d <= family.MAX_DIFFICULTY)
    if not levels:
        raise ValueError(f"{family.NAME} has difficulties 1..{family.MAX_DIFFICULTY}, none of {list(difficulties)}")
    return levels


def answer_key(family: object, answer: str, problem: Problem) -> str | None:
    """The family's voting key for `answer`; families without `answer_key` vote on the
    whitespace-normalised text."""
    fn = getattr(family, "answer_key", None)
    if fn is not None:
        return fn(answer, problem)
    text = " ".join(answer.split())
    return text or None


def generate_many(family: TaskFamily, n: int, seed: int = 0, split: str = "train",
                  difficulty: int = 1, unique: bool = True) -> list[Problem]:
    """`n` problems from seeds seed, seed+1, ...; with `unique`, repeats are skipped.

    Small families (letter counting at difficulty 1 has a few hundred problems) cannot fill
    large unique requests; the search stops after 20*n seeds and returns what it found.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out: list[Problem] = []
    seen: set[str] = set()
    s = seed
    while len(out) < n and s < seed + 20 * max(n, 1):
        p = family.generate(s, split=split, difficulty=difficulty)
        s += 1
        if unique:
            if p.id in seen:
                continue
            seen.add(p.id)
        out.append(p)
    return out
