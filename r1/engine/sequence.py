"""Engine state: one Sequence per completion being generated (a request with n > 1 has n)."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import torch

from r1.engine.sampling import SamplingParams


class Status(enum.Enum):
    WAITING = "waiting"  # needs (re)computing of its KV before it can decode
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)  # identity semantics: the scheduler's `in` / remove() must not compare fields
class Sequence:
    seq_id: int
    request_id: str
    index: int  # which of the request's n completions
    prompt_ids: list[int]
    params: SamplingParams
    output_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # hash chain of its computed full blocks
    num_computed: int = 0  # tokens whose KV is in the cache
    num_cached_prompt: int = 0  # prompt tokens served from the prefix cache (usage.cached_tokens)
    generator: torch.Generator | None = None
    finish_reason: str | None = None
    error: str | None = None  # why it finished with reason "error"
    stop_token: int | None = None  # the eos / stop token that ended it (not in output_ids)
    arrival: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    # reasoning budget: tokens generated while inside <think> and whether we still are
    in_reasoning: bool = False
    reasoning_tokens: int = 0
    forced: list[int] = field(default_factory=list)  # tokens the engine will emit next (e.g. </think>)
    draft: int | None = None  # MTP's guess for the token after the next one
    draft_q: torch.Tensor | None = None  # the distribution it was drawn from (for verification)
    # streaming text state
    detok: object | None = None
    text: str = ""
    emitted_chars: int = 0
    emitted_tokens: int = 0
    logprobs: list[dict] = field(default_factory=list)
    preemptions: int = 0

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    def token_slice(self, start: int, end: int) -> list[int]:
        """all_ids[start:end] without building all_ids (a decode step wants one token)."""
        p = len(self.prompt_ids)
        if start >= p:
            return self.output_ids[start - p : end - p]
        return self.prompt_ids[start:end] + self.output_ids[: max(0, end - p)]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def is_finished(self) -> bool:
        return self.status == Status.FINISHED

    @property
    def num_uncomputed(self) -> int:
        return len(self) - self.num_computed
