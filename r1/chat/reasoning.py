"""Split an R1 completion into its reasoning and its answer, whole or while it streams.

R1 writes `<think>\\n...reasoning...\\n</think>\\n\\nanswer`. The `<think>` may be in the completion
(old R1 template, distilled models) or already in the prompt (the current R1 template's generation
prompt ends with `<｜Assistant｜><think>\\n`), and `</think>` may never come (the length limit cut
the reasoning off: then everything is reasoning). Whitespace follows DeepSeek's API: the reasoning
is stripped at both ends, the answer loses the blank lines after `</think>`.

The rules, shared by `split_reasoning` and `ReasoningStreamParser` (a test feeds every split point
to check they agree):

* reasoning is open from the start when the prompt opened it (`think_in_prompt`), or when the
  completion opens it: its first non-whitespace text is `<think>` (a repeated `<think>` after a
  prompt that already opened one is dropped too);
* otherwise there is no reasoning and the completion is all answer, unchanged; a stray `</think>`
  stays visible in it;
* the first `</think>` closes the reasoning; later `<think>`/`</think>` are answer text.
"""
from __future__ import annotations

from r1.chat.r1_template import THINK_CLOSE, THINK_OPEN


def split_reasoning(text: str, think_in_prompt: bool) -> tuple[str, str]:
    """(reasoning, content) of a finished completion."""
    if not isinstance(text, str):
        raise TypeError(f"split_reasoning() takes the completion text, got {type(text).__name__}")
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN):]
    elif think_in_prompt:
        body = text
    else:
        return "", text
    reasoning, closed, content = body.partition(THINK_CLOSE)
    if not closed:
        return reasoning.strip(), ""  # truncated inside the reasoning
    return reasoning.strip(), content.lstrip()


def prompt_opens_reasoning(prompt: str) -> bool:
    """Whether a rendered prompt leaves a `<think>` open for the completion to continue: pass the
    answer as `think_in_prompt`. (The R1 template does so, except right after tool outputs.)"""
    tail = prompt.rstrip()
    return tail.endswith(THINK_OPEN)


# Closing an opened think block at once is how R1-family models are run without thinking
# (DeepSeek-V3.1's non-thinking mode renders `<｜Assistant｜></think>`).
EMPTY_THOUGHT = "\n" + THINK_CLOSE + "\n\n"


def close_reasoning(prompt: str) -> str:
    """A prompt that opened `<think>` with the block closed empty: the no-thinking mode. The server
    renders it for `thinking: disabled` / `think: false`, and SFT teaches the model that mode on
    the very same text."""
    return prompt + (EMPTY_THOUGHT.lstrip("\n") if prompt.endswith("\n") else EMPTY_THOUGHT)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`: the characters that
    might become the tag once more text arrives, so they must not be emitted yet."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningStreamParser:
    """Incremental `split_reasoning`: `feed(delta)` returns (reasoning_delta, content_delta) and
    `finish()` the last pair. Text that could still turn out to be part of a tag, or whitespace
    that the final strip may drop, is held back, so neither field ever shows a partial `</think>`
    and the concatenated deltas equal `split_reasoning` of the whole text."""

    _START, _REASONING, _CONTENT_START, _CONTENT = range(4)

    def __init__(self, think_in_prompt: bool) -> None:
        self.think_in_prompt = bool(think_in_prompt)
        self._state = self._START
        self._buf = ""  # received but not yet emitted
        self._reasoning_started = False  # a non-whitespace reasoning character was emitted
        self._finished = False

    @property
    def in_reasoning(self) -> bool:
        """True while the completion is (or may still be) inside the think block."""
        return self._state == self._REASONING or (self._state == self._START and self.think_in_prompt)

    def feed(self, delta: str) -> tuple[str, str]:
        if self._finished:
            raise RuntimeError("ReasoningStreamParser.feed() after finish()")
        if not isinstance(delta, str):
            raise TypeError(f"feed() takes a text delta, got {type(delta).__name__}")
        self._buf += delta
        return self._advance(final=False)

    def finish(self) -> tuple[str, str]:
        """Flush at the end of the completion (finished or truncated)."""
        if self._finished:
            return "", ""
        out = self._advance(final=True)
        self._finished = True
        return out

    def _advance(self, final: bool) -> tuple[str, str]:
        reasoning, content = [], []
        while True:
            state = self._state
            if state == self._START:
                body = self._buf.lstrip()
                if body.startswith(THINK_OPEN):
                    self._buf = body[len(THINK_OPEN):]
                    self._state = self._REASONING
                elif not final and (body == "" or THINK_OPEN.startswith(body)):
                    break  # only whitespace or a possible "<think" so far: undecided
                elif self.think_in_prompt:
                    self._state = self._REASONING  # keep the whitespace: the reasoning strip drops it
                else:
                    self._state = self._CONTENT  # no think block: the completion is all answer
            elif state == self._REASONING:
                idx = self._buf.find(THINK_CLOSE)
                if idx >= 0:
                    before, after = self._buf[:idx], self._buf[idx + len(THINK_CLOSE):]
                    reasoning.append(self._emit_reasoning(before, closing=True))
                    self._buf = after
                    self._state = self._CONTENT_START
                    continue
                reasoning.append(self._emit_reasoning(self._buf, closing=final))
                break
            elif state == self._CONTENT_START:
                body = self._buf.lstrip()
                if body:
                    self._buf = body
                    self._state = self._CONTENT
                else:
                    self._buf = ""  # blank lines after </think> never reach the answer
                    break
            else:
                content.append(self._buf)
                self._buf = ""
                break
        return "".join(reasoning), "".join(content)

    def _emit_reasoning(self, text: str, closing: bool) -> str:
        """Emit what is certain of `text` (reasoning before any `</think>`); keep the rest in _buf."""
        if not self._reasoning_started:
            text = text.lstrip()
        if closing:
            out = text.rstrip()
            self._buf = ""
        else:
            hold = _partial_suffix(text, THINK_CLOSE)
            certain = text[:len(text) - hold]
            out = certain.rstrip()  # trailing whitespace is dropped if </think> comes next
            self._buf = text[len(out):]
        if out:
            self._reasoning_started = True
        return out
