"""Structured output: grammars (JSON object, JSON schema, forced tool calls) compiled by `xgrammar`
and applied as a per-request logits mask once the reasoning has ended.

R1 thinks first and answers second; a grammar that held from the first token would forbid the
thinking. So the processor lets everything through while the completion is inside `<think>` (when
the prompt opened it) and starts masking with the first token after `</think>`; a few leading
whitespace characters are allowed because R1 writes a blank line after `</think>`.

The processor speaks the engine's hook `SamplingParams.logits_processors`: it is called as
`proc(output_ids, logits)` with the tokens generated so far and that row's logits (V,) -- the
engine's own fp32 copy, which the processor masks in place -- and returns them. It keeps no
per-call state that must stay in step with the engine: a request with n > 1 shares one processor
among its n sequences, and a preempted sequence is recomputed, so the matcher state is looked up
by the token history (and rebuilt by replaying it on a miss).
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r1.chat.r1_template import THINK_CLOSE, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP

# Whitespace R1 puts between </think> and the answer ("\n\n"), bounded so an untrained model cannot
# spend its whole budget on blank lines before the JSON starts.
_LEADING_WS = "root ::= [ \\n\\t]{0,4}"
# Tokens decoded to look for </think>: enough to hold it however it was split into tokens.
_TAIL_TOKENS = 12
_CACHE_STATES = 64
_MAX_WS_RUN = 16
# xgrammar's compile time grows faster than the schema (docs/manual.md: a 20,000-value enum took
# seconds); it cannot be interrupted, so a schema is bounded by its size before compiling starts.
MAX_SCHEMA_BYTES = 64 * 1024


class GrammarError(ValueError):
    """A response format or tool schema that cannot be turned into a grammar; the message says why."""


def _clean_error(e: Exception) -> str:
    # xgrammar's C++ errors start with "[time] /path/file.cc:line: Check failed: ..."
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", msg)
    return msg.replace("Check failed: (error.empty()) is false: ", "")


class GrammarCompiler:
    """Compiles grammars for one tokenizer + model vocabulary (the bitmask covers the model's
    vocab_size, which may exceed the tokenizer's). Compiling the vocabulary once costs ~0.1 s;
    compiled grammars are cached by xgrammar."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int],
                 max_schema_bytes: int = MAX_SCHEMA_BYTES) -> None:
        import xgrammar as xgr

        self.max_schema_bytes = max_schema_bytes

        self.xgr = xgr
        self.tokenizer = tokenizer
        self.vocab_size = int(vocab_size)
        backend = tokenizer.backend
        vocab = backend.get_vocab(with_added_tokens=True)
        encoded = [""] * self.vocab_size
        for token, idx in vocab.items():
            if idx < self.vocab_size:
                encoded[idx] = token
        # The same detection xgrammar's from_huggingface runs on a fast tokenizer's backend (we hold
        # the `tokenizers` object itself, not a transformers wrapper around it).
        meta = xgr.TokenizerInfo._detect_metadata_from_hf(backend.to_str())
        stops = [int(t) for t in stop_token_ids if 0 <= int(t) < self.vocab_size]
        if not stops:
            raise GrammarError("structured output needs at least one end-of-sequence token id")
        self.info = xgr.TokenizerInfo(encoded, meta["vocab_type"], vocab_size=self.vocab_size,
                                      stop_token_ids=stops, add_prefix_space=meta["add_prefix_space"])
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2)

    # -- grammars
    def _json(self, schema: dict | None):
        # Free layout (a real model indents its JSON as it learned to), but each whitespace run is
        # bounded, so a weak model cannot spend its whole budget on blank space.
        schema = {"type": "object"} if schema is None else schema
        text = self._sized(schema)
        try:
            return self.xgr.Grammar.from_json_schema(text, any_whitespace=True,
                                                     max_whitespace_cnt=_MAX_WS_RUN)
        except Exception as e:  # xgrammar raises RuntimeError for every unsupported/invalid schema
            raise GrammarError(f"invalid JSON schema: {_clean_error(e)}") from e

    def _sized(self, schema: Any, what: str = "the JSON schema") -> str:
        try:
            text = json.dumps(schema)
        except (TypeError, ValueError, RecursionError) as e:
            raise GrammarError(f"{what} is not serializable JSON: {e}") from None
        if len(text) > self.max_schema_bytes:
            raise GrammarError(f"{what}: {len(text) / 1024:.0f} KiB of JSON, over this server's limit of "
                               f"{self.max_schema_bytes / 1024:.0f} KiB for structured output (larger schemas "
                               "take seconds to compile)")
        return text

    def _with_leading_ws(self, grammar):
        return self.xgr.Grammar.concat(self.xgr.Grammar.from_ebnf(_LEADING_WS), grammar)

    def _compile(self, grammar):
        try:
            return self.compiler.compile_grammar(grammar)
        except Exception as e:
            raise GrammarError(f"cannot compile the grammar: {_clean_error(e)}") from e

    def json_object(self):
        """Any JSON object (OpenAI's `response_format: {"type": "json_object"}`, Ollama's `format: "json"`)."""
        return self._compile(self._with_leading_ws(self._json(None)))

    def json_schema(self, schema: dict):
        """JSON valid under `schema` (OpenAI's `json_schema`, Ollama's `format: {schema}`)."""
        if not isinstance(schema, dict):
            raise GrammarError(f"a JSON schema must be an object, got {type(schema).__name__}")
        return self._compile(self._with_leading_ws(self._json(schema)))

    def tool_calls(self, tools: Sequence[dict]):
        """One DeepSeek tool-call block calling one of `tools` (OpenAI function definitions) with
        arguments valid under its `parameters` schema: what `tool_choice: "required"` or a named
        tool_choice forces. The block is written exactly as the R1 template renders calls, so
        `parse_tool_calls` reads it back."""
        if not tools:
            raise GrammarError("tool_choice requires at least one tool")
        self._sized(list(tools), "the tool definitions")  # together: each alone may fit, all of them not
        xgr = self.xgr
        alternatives = []
        for tool in tools:
            fn = tool.get("function", tool)
            name = fn.get("name")
            if not isinstance(name, str) or not name or "\n" in name:
                raise GrammarError(f"tool name {name!r} must be a non-empty single-line string")
            params = fn.get("parameters") or {"type": "object"}
            head = f"{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}{name}\n```json\n"
            tail = f"\n```{TOOL_CALL_END}{TOOL_CALLS_END}"
            alternatives.append(xgr.Grammar.concat(
                xgr.Grammar.from_ebnf("root ::= " + json.dumps(head)), self._json(params),
                xgr.Grammar.from_ebnf("root ::= " + json.dumps(tail))))
        body = alternatives[0] if len(alternatives) == 1 else xgr.Grammar.union(*alternatives)
        return self._compile(self._with_leading_ws(body))

    def processor(self, compiled, wait_for_reasoning: bool) -> GrammarLogitsProcessor:
        return GrammarLogitsProcessor(self, compiled, wait_for_reasoning)


@dataclass
class _State:
    matcher: Any
    in_reasoning: bool
    failed: bool = False


class GrammarLogitsProcessor:
    """`proc(output_ids, logits (V,)) -> logits`: -inf outside the grammar once reasoning is over."""

    def __init__(self, compiler: GrammarCompiler, compiled, wait_for_reasoning: bool) -> None:
        self.c = compiler
        self.compiled = compiled
        self.wait_for_reasoning = bool(wait_for_reasoning)
        self._states: OrderedDict[tuple[int, ...], _State] = OrderedDict()
        self._bitmask = compiler.xgr.allocate_token_bitmask(1, compiler.vocab_size)
        self.rejected = 0  # tokens the grammar did not allow (forced ones); for tests and logs

    def _fresh(self) -> _State:
        return _State(self.c.xgr.GrammarMatcher(self.compiled), in_reasoning=self.wait_for_reasoning)

    def _advance(self, st: _State, ids: list[int], k: int) -> _State:
        """Feed token ids[k] to a state that has seen ids[:k]."""
        tok = ids[k]
        if st.in_reasoning:
            tail = self.c.tokenizer.decode(ids[max(0, k + 1 - _TAIL_TOKENS): k + 1])
            if THINK_CLOSE in tail:
                st.in_reasoning = False
                rest = tail.split(THINK_CLOSE, 1)[1]
                if rest and not st.matcher.accept_string(rest):
                    st.failed = True
                    self.rejected += 1
            return st
        if st.failed or st.matcher.is_terminated():
            return st
        if not st.matcher.accept_token(tok):
            # only a token the engine forced can get here; the grammar can no longer hold, so stop
            # masking rather than mask everything (which would emit garbage at -inf)
            st.failed = True
            self.rejected += 1
        return st

    def state_for(self, output_ids: Sequence[int]) -> _State:
        ids = list(output_ids)
        key = tuple(ids)
        st = self._states.get(key)
        if st is None:
            prev = self._states.get(key[:-1]) if ids else None
            if prev is not None and ids:
                # this sequence continues from prev; a sibling (n > 1) may continue from it too,
                # so fork rather than advance it in place
                st = _State(prev.matcher.fork(), prev.in_reasoning, prev.failed)
                st = self._advance(st, ids, len(ids) - 1)
            else:  # first call, or a history we have not seen (preemption): replay it
                st = self._fresh()
                for k in range(len(ids)):
                    st = self._advance(st, ids, k)
            self._states[key] = st
            while len(self._states) > _CACHE_STATES:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return st

    def __call__(self, output_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        st = self.state_for(output_ids)
        if st.in_reasoning or st.failed:
            return logits
        st.matcher.fill_next_token_bitmask(self._bitmask)
        # in place: the engine hands every processor its own fp32 copy of the row. (A clone here
        # was slow on a busy 2-core machine: torch's copy threads fight xgrammar's.)
        self.c.xgr.apply_token_bitmask_inplace(logits.view(1, -1), self._bitmask, vocab_size=logits.shape[-1])
        return logits

    def accepts(self, output_ids: Sequence[int]) -> bool:
        """Whether the grammar holds over these tokens (reasoning excluded), for checks and tests."""
        st = self.state_for(output_ids)
        return not st.failed
