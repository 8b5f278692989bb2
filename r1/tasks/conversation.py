"""Multi-turn chats for SFT and evaluation: a question asked after earlier exchanges, in people's words.

R1's chat template keeps only the final answer of earlier assistant turns (their reasoning is
dropped), so a conversation's history is user lines and short replies: "The answer is
\\boxed{83}." after a sum, words after a greeting. A model trained on single questions alone
loses its way at the second turn; these records teach it to answer the last question and only it.

- `conversation_records` (SFT): 1-3 turn chats whose last assistant turn is the target; a share
  of them in the no-thinking mode (`"thinking": false`: the prompt closes the think block, the
  target is the bare answer), the R1-0528-style hybrid the server's thinking switch relies on.
- `in_conversation` (eval): a graded problem placed after turns drawn from the same split, its
  history in `meta["history"]`, so the eval renders the whole chat and grades the last turn.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any

from r1.chat.r1_template import THINK_CLOSE, THINK_OPEN
from r1.tasks import get_task
from r1.tasks.base import Problem
from r1.tasks.phrasing import random_phrasing
from r1.tasks.prompting import final_answer_text, is_math_like, sft_completion, user_message

CHAT_TASKS = ("mixed_arithmetic",)


@dataclasses.dataclass(frozen=True)
class ChatMix:
    """How chats are drawn. Shares are probabilities per record (or per earlier turn)."""
    tasks: tuple[str, ...] = CHAT_TASKS  # families the questions come from (at difficulty 1)
    max_turns: int = 3  # a chat has 1..max_turns user turns
    p_chitchat: float = 0.2  # a turn is chitchat (greeting, thanks, out of scope) instead of a question
    p_no_think: float = 0.1  # a record is in the no-thinking mode
    p_canonical: float = 0.3  # a question keeps its canonical sentence, else people's words
    instruction_share: float = 0.3  # a question carries R1's math instruction (people rarely type it)

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}")
        for name in ("p_chitchat", "p_no_think", "p_canonical", "instruction_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for t in self.tasks:
            get_task(t)  # raises with the known names


def short_reply(problem: Problem) -> str:
    """What an earlier turn shows of the assistant's reply once the template drops its reasoning."""
    return f"The answer is {final_answer_text(problem)}." if is_math_like(problem) else problem.answer


def _question(rng: random.Random, mix: ChatMix, split: str, seed: int) -> Problem:
    if rng.random() < mix.p_chitchat:
        return get_task("chitchat").generate(seed, split)
    task = mix.tasks[rng.randrange(len(mix.tasks))]
    p = random_phrasing(get_task(task).generate(seed, split, 1), rng, mix.p_canonical)
    return p if rng.random() < mix.instruction_share else dataclasses.replace(p, meta={**p.meta, "instruction": False})


def history(rng: random.Random, mix: ChatMix, split: str, n_turns: int, seed: int) -> list[dict[str, str]]:
    """`n_turns` earlier exchanges (user line, short reply) drawn from `split`."""
    out = []
    for t in range(n_turns):
        p = _question(rng, mix, split, seed * 7 + 1 + t)
        out += [{"role": "user", "content": user_message(p)}, {"role": "assistant", "content": short_reply(p)}]
    return out


def conversation_records(n: int, seed: int = 0, mix: ChatMix | None = None) -> list[dict[str, Any]]:
    """`n` train-split SFT chats ({"messages": [...], "thinking": bool, grading columns})."""
    mix = mix or ChatMix()
    rng = random.Random(f"conversation:{seed}")
    out = []
    for i in range(n):
        s = seed * 1_000_003 + i * 11
        p = _question(rng, mix, "train", s)
        thinking = rng.random() >= mix.p_no_think
        if p.task == "chitchat":  # thinking on: the block closes at once, the text of the no-thinking mode
            target = f"{THINK_OPEN}\n{THINK_CLOSE}\n\n{p.answer}" if thinking else p.answer
        elif thinking:
            target = sft_completion(p, get_task(p.task).trace(p), style="chat", think_in_prompt=False)
        else:
            target = short_reply(p)
        msgs = history(rng, mix, "train", rng.randrange(mix.max_turns), s)
        msgs += [{"role": "user", "content": user_message(p)}, {"role": "assistant", "content": target}]
        out.append({"messages": msgs, "thinking": thinking, **p.to_columns()})
    return out


def in_conversation(problem: Problem, rng: random.Random, turns: int, seed: int,
                    mix: ChatMix | None = None) -> Problem:
    """`problem` as the last of `turns` user turns, after test-split exchanges; asked without R1's
    math instruction, as people do."""
    mix = mix or ChatMix()
    meta = {**problem.meta, "instruction": False, "history": history(rng, mix, "test", turns - 1, seed)}
    return dataclasses.replace(problem, meta=meta)
