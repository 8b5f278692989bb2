"""The `mix` stage of a pipeline: one shuffled JSONL of chat SFT records from several sources.

Sources (any number, each a mapping with one kind key):
  {generated: {tasks, n_per_task, difficulties, p_canonical, instruction_share, seed}}
      worked solutions written by the task families' trace generators, in R1's chat format
      (`<think>` reasoning, then the answer summary)
  {file: PATH, limit: N}          records of an earlier stage (e.g. "@rejection") or any JSONL
  {chitchat: N}                   non-reasoning chat turns (r1.tasks.chitchat)
  {conversations: {n, seed, tasks, max_turns, p_chitchat, p_no_think, p_canonical, instruction_share}}
      1-3 turn chats in people's words, some in the no-thinking mode (r1.tasks.conversation)
"""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1.fileio import atomic_write_text
from r1.train.config import TrainConfigError

SOURCE_KINDS = ("generated", "file", "chitchat", "conversations")


@dataclass
class MixConfig:
    sources: list[dict] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sources:
            raise TrainConfigError("mix.sources is empty; give generated / file / chitchat sources")
        for i, s in enumerate(self.sources):
            kinds = [k for k in SOURCE_KINDS if k in s]
            if len(kinds) != 1:
                raise TrainConfigError(f"mix.sources[{i}] must have exactly one of {', '.join(SOURCE_KINDS)}, "
                                       f"got keys {', '.join(s) or 'none'}")


def generated_records(tasks: list[str], n_per_task: int, difficulties: list[int] | None = None,
                      p_canonical: float = 0.5, instruction_share: float = 0.5, seed: int = 0) -> list[dict]:
    from r1.tasks.datasets import sft_records

    out = []
    for t in tasks:
        for r in sft_records(t, n_per_task, seed=seed, difficulty=tuple(difficulties or [1]), style="chat",
                             think_in_prompt=False, p_canonical=p_canonical, instruction_share=instruction_share):
            out.append({"messages": [{"role": "user", "content": r.pop("prompt")},
                                     {"role": "assistant", "content": r.pop("completion")}], **r})
    return out


def _source(s: dict[str, Any]) -> list[dict]:
    from r1.tasks.chitchat import chitchat_records
    from r1.train.data import read_jsonl

    if "generated" in s:
        return generated_records(**s["generated"])
    if "conversations" in s:
        from r1.tasks.conversation import ChatMix, conversation_records

        c = dict(s["conversations"])
        n, seed = int(c.pop("n")), int(c.pop("seed", 0))
        if "tasks" in c:
            c["tasks"] = tuple(c["tasks"])
        try:
            return conversation_records(n, seed, ChatMix(**c))
        except (TypeError, ValueError, KeyError) as e:
            raise TrainConfigError(f"mix source conversations: {e}") from None
    if "file" in s:
        recs = read_jsonl(s["file"])
        return list(itertools.islice(recs, s["limit"]) if s.get("limit") else recs)
    return chitchat_records(int(s["chitchat"]), seed=int(s.get("seed", 0)))


def build_mix(cfg: MixConfig, out: Path) -> dict[str, int]:
    """Write the shuffled union of the sources to `out`; returns the record count per source."""
    records, counts = [], {}
    for i, s in enumerate(cfg.sources):
        recs = _source(s)
        counts[f"{i}:{next(k for k in SOURCE_KINDS if k in s)}"] = len(recs)
        records += recs
    random.Random(cfg.seed).shuffle(records)
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in records))
    atomic_write_text(out.with_name("mix.json"), json.dumps({"records": len(records), "per_source": counts}, indent=1))
    return counts
