"""Streaming detokenization: token ids in, text deltas out, never half a character.

Decoding token by token is wrong twice over: byte-level BPE splits one UTF-8 character over several
tokens (each alone decodes to U+FFFD), and SentencePiece-style decoders drop the space that starts a
sequence, so `decode([a]) + decode([b]) != decode([a, b])`. The fix (as in vLLM and HF's
`DecodeStream`) is to decode a short window twice, with and without the newest tokens, and emit the
difference once it no longer ends in a replacement character. The window starts at the previous
emission point, so the work per token stays constant however long the generation gets.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"
# Prompt tokens kept as left context, so the first generated token keeps its leading space.
_PROMPT_CONTEXT = 6


class _Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Feed ids with `step`; each call returns the new text ("" while a character is incomplete).
    `finish` returns what is still held back, so the deltas joined equal
    `tokenizer.decode(generated_ids)` exactly. With `prompt_ids` they are instead the text the
    generation adds after the prompt: the same, except that a SentencePiece-style leading space
    of the first generated token is kept, as a chat UI needs."""

    def __init__(self, tokenizer: _Decoder, *, skip_special_tokens: bool = True,
                 prompt_ids: Sequence[int] | None = None) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        context = list(prompt_ids[-_PROMPT_CONTEXT:]) if prompt_ids else []
        self._ids: list[int] = context
        self._n_context = len(context)
        self._prefix = 0  # window start: decoded text of ids[_prefix:_read] was already emitted
        self._read = len(context)
        self._finished = False

    @property
    def generated_ids(self) -> list[int]:
        return self._ids[self._n_context:]

    def step(self, ids: int | Iterable[int]) -> str:
        if self._finished:
            raise RuntimeError("IncrementalDetokenizer.step() after finish()")
        if isinstance(ids, int):
            self._ids.append(ids)
        else:
            self._ids.extend(ids)
        return self._emit(final=False)

    def finish(self) -> str:
        """Flush held-back text; an incomplete character at the very end comes out as U+FFFD,
        just as a full `decode` shows it."""
        if self._finished:
            return ""
        out = self._emit(final=True)
        self._finished = True
        return out

    def _emit(self, final: bool) -> str:
        if len(self._ids) == self._read:
            return ""
        before = self._tok.decode(self._ids[self._prefix:self._read], skip_special_tokens=self._skip)
        after = self._tok.decode(self._ids[self._prefix:], skip_special_tokens=self._skip)
        if not final and (len(after) <= len(before) or after.endswith(REPLACEMENT_CHAR)):
            # Mid-character, or a token that decodes to nothing yet (a skipped special token, a
            # lone space a SentencePiece decoder strips at the start): wait for more.
            return ""
        # Decoders only ever append as tokens arrive (the window's start is fixed), so the new
        # text is the tail past what this window already produced.
        delta = after[len(before):]
        self._prefix, self._read = self._read, len(self._ids)
        return delta
