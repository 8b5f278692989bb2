"""One completion (choice) as it streams: engine text deltas in, reasoning/answer/tool-call deltas
out, with the output guard and the token counts the usage block reports.

Both APIs and both modes (streaming or not) go through this one path, so a non-streaming answer
is by construction the concatenation of the deltas a streaming client would have seen.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field

from r1.chat.reasoning import ReasoningStreamParser
from r1.chat.tool_calls import ToolCall, ToolCallStreamParser
from r1.engine.engine import CompletionOutput
from r1.serve.guard import REFUSAL, OutputChecker, Verdict


@dataclass
class Delta:
    reasoning: str = ""
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[dict] = field(default_factory=list)  # engine logprob entries of the tokens in this delta
    finish_reason: str | None = None
    n_tokens: int = 0

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.content or self.tool_calls or self.finish_reason or self.logprobs)


class ChoiceStream:
    """split_reasoning + parse_tool_calls, incrementally, for one choice."""

    def __init__(self, index: int, think_in_prompt: bool, split_reasoning: bool = True, parse_tools: bool = False,
                 checker: OutputChecker | None = None) -> None:
        self.index = index
        self.reasoning_parser = ReasoningStreamParser(think_in_prompt) if split_reasoning else None
        self.tool_parser = ToolCallStreamParser() if parse_tools else None
        self.checker = checker
        self.reasoning, self.content = [], []
        self.tool_calls: list[ToolCall] = []
        self.logprobs: list[dict] = []
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.flagged: Verdict | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def _split(self, text: str, final: bool) -> tuple[str, str, list[ToolCall]]:
        if self.reasoning_parser is not None:
            r, c = self.reasoning_parser.feed(text) if text else ("", "")
            if final:
                r2, c2 = self.reasoning_parser.finish()
                r, c = r + r2, c + c2
        else:
            r, c = "", text
        calls: list[ToolCall] = []
        if self.tool_parser is not None:
            c = self.tool_parser.feed(c) if c else ""
            if final:
                c2, calls = self.tool_parser.finish()
                c += c2
        return r, c, calls

    async def feed(self, out: CompletionOutput) -> Delta:
        if self.done:
            return Delta()
        final = out.finish_reason is not None
        r, c, calls = self._split(out.text_delta, final)
        d = Delta(r, c, calls, list(out.logprobs_delta or []), n_tokens=len(out.token_ids_delta))
        self.completion_tokens = len(out.token_ids)
        self.reasoning_tokens = out.reasoning_tokens
        if self.checker is not None:
            v = await self.checker.feed(r + c + "".join(f"{t.name}({t.arguments})" for t in calls))
            if not v.flagged and final:
                v = await self.checker.finish()
            if v.flagged:
                return self.refuse(v)
        self.reasoning.append(r)
        self.content.append(c)
        self.tool_calls += calls
        self.logprobs += d.logprobs
        if final:
            self.finish_reason = "tool_calls" if self.tool_calls else ("abort" if out.finish_reason == "abort"
                                                                     else out.finish_reason)
            d.finish_reason = self.finish_reason
        return d

    def refuse(self, verdict: Verdict) -> Delta:
        """Replace the answer with the standard refusal (what was already streamed stays sent)."""
        self.flagged = verdict
        self.reasoning, self.content, self.tool_calls = [], [REFUSAL], []
        self.finish_reason = "content_filter"
        return Delta(content=REFUSAL, finish_reason="content_filter")

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def content_text(self) -> str:
        return "".join(self.content)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now_s() -> int:
    return int(time.time())


def tool_call_dicts(calls: list[ToolCall], with_index: bool = False) -> list[dict]:
    out = []
    for i, t in enumerate(calls):
        d = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": t.type or "function",
             "function": {"name": t.name, "arguments": t.arguments}}
        if with_index:
            d = {"index": i, **d}
        out.append(d)
    return out


def arguments_object(arguments: str) -> dict:
    """Ollama wants arguments as an object; a model that wrote invalid JSON gets its text kept."""
    try:
        v = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return v if isinstance(v, dict) else {"value": v}


def finite(x: float) -> float:
    """JSON has no -inf/NaN: a token the sampling settings made impossible gets OpenAI's -9999."""
    return x if math.isfinite(x) else -9999.0


class TokenText:
    """Token id -> its text for logprobs (special tokens included, as OpenAI shows them)."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, tid: int) -> str:
        s = self._cache.get(tid)
        if s is None:
            try:
                s = self.tok.decode([tid], skip_special_tokens=False)
            except ValueError:
                s = ""
            self._cache[tid] = s
        return s


def openai_logprobs(entries: list[dict], text: TokenText) -> dict:
    """Engine logprob entries -> chat `logprobs.content` items."""
    items = []
    for e in entries:
        tok = text(e["token_id"])
        items.append({"token": tok, "logprob": finite(e["logprob"]), "bytes": list(tok.encode("utf-8")),
                      "top_logprobs": [{"token": text(t), "logprob": finite(lp), "bytes": list(text(t).encode("utf-8"))}
                                       for t, lp in e.get("top", [])]})
    return {"content": items}
