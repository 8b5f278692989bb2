"""Parse DeepSeek-V3/R1 tool calls out of an answer, whole or while it streams.

The model writes, after any answer text (format as rendered by the R1 template and as vLLM's
DeepSeek-V3 tool parser reads it):

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
    ```json
    ARGUMENTS
    ```<｜tool▁call▁end｜>
    <｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>

The block is accepted only if it parses completely (the closing `<｜tool▁calls▁end｜>` may be
missing, since generation can stop right after the last call); otherwise it stays in the content
verbatim, so a malformed or truncated call is visible rather than silently lost.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from r1.chat.r1_template import TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP

# One call. Arguments are non-greedy up to the first "```<｜tool▁call▁end｜>", so JSON holding
# newlines or backticks of its own still parses.
_CALL = re.compile(
    re.escape(TOOL_CALL_BEGIN)
    + r"(?P<type>[^\n]*?)" + re.escape(TOOL_SEP) + r"(?P<name>[^\n]*?)[ \t]*\n"
    + r"```(?:json)?[ \t]*\n(?P<arguments>.*?)\n?```[ \t]*" + re.escape(TOOL_CALL_END),
    re.DOTALL,
)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text as the model wrote it (OpenAI's `function.arguments` is a string too)
    type: str = "function"


def _block_start(text: str) -> int:
    # The model may skip the outer <｜tool▁calls▁begin｜>; a bare call still starts a block.
    starts = [i for i in (text.find(TOOL_CALLS_BEGIN), text.find(TOOL_CALL_BEGIN)) if i >= 0]
    return min(starts) if starts else -1


def _parse_block(block: str) -> list[ToolCall] | None:
    """The calls in `block` (which starts at the first tool token), or None if any part of it
    is not a well-formed call."""
    pos = len(TOOL_CALLS_BEGIN) if block.startswith(TOOL_CALLS_BEGIN) else 0
    calls = []
    while True:
        while pos < len(block) and block[pos].isspace():
            pos += 1
        if block.startswith(TOOL_CALLS_END, pos):
            pos += len(TOOL_CALLS_END)
            break
        if pos == len(block):
            break
        m = _CALL.match(block, pos)
        if m is None:
            return None
        name = m["name"].strip()
        if not name:
            return None
        calls.append(ToolCall(name=name, arguments=m["arguments"].strip(), type=m["type"].strip() or "function"))
        pos = m.end()
    if block[pos:].strip() or not calls:
        return None  # text after the block, or a block without any call
    return calls


def parse_tool_calls(content: str) -> tuple[str, list[ToolCall]]:
    """(content without the tool-call block, calls). No block, or a malformed one: (content, [])."""
    if not isinstance(content, str):
        raise TypeError(f"parse_tool_calls() takes the answer text, got {type(content).__name__}")
    start = _block_start(content)
    if start < 0:
        return content, []
    calls = _parse_block(content[start:])
    if calls is None:
        return content, []
    return content[:start], calls


def _partial_suffix(text: str, tags: tuple[str, ...]) -> int:
    best = 0
    for tag in tags:
        for n in range(min(len(text), len(tag) - 1), best, -1):
            if tag.startswith(text[-n:]):
                best = n
                break
    return best


class ToolCallStreamParser:
    """Streams answer text through until a tool-call block starts, then holds the block back and
    parses it at `finish()`. A partial tool token at the end of a delta is held too, so the content
    stream never shows half a tool token; joined output equals `parse_tool_calls` of the whole."""

    def __init__(self) -> None:
        self._pending = ""  # possible start of a tool token, not yet emitted
        self._block: str | None = None  # the tool-call block once it started
        self._finished = False

    @property
    def in_tool_calls(self) -> bool:
        return self._block is not None

    def feed(self, delta: str) -> str:
        """The content delta that is certain to be answer text."""
        if self._finished:
            raise RuntimeError("ToolCallStreamParser.feed() after finish()")
        if not isinstance(delta, str):
            raise TypeError(f"feed() takes a text delta, got {type(delta).__name__}")
        if self._block is not None:
            self._block += delta
            return ""
        text = self._pending + delta
        start = _block_start(text)
        if start >= 0:
            self._block = text[start:]
            self._pending = ""
            return text[:start]
        hold = _partial_suffix(text, (TOOL_CALLS_BEGIN, TOOL_CALL_BEGIN))
        self._pending = text[len(text) - hold:]
        return text[:len(text) - hold]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(last content delta, calls). A malformed block comes back as content."""
        if self._finished:
            return "", []
        self._finished = True
        if self._block is None:
            return self._pending, []
        calls = _parse_block(self._block)
        if calls is None:
            return self._block, []
        return "", calls
