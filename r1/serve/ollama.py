"""The Ollama-compatible API: /api/chat, /api/generate (NDJSON streaming, `think`, `thinking`,
`format`, `options`), /api/tags, /api/show, /api/ps, /api/version.

Ollama streams by default (`stream` omitted = true), reports durations in nanoseconds
(`total_duration`, `prompt_eval_duration`, `eval_duration`, ...) and answers errors as
`{"error": "..."}`; this module does the same so the `ollama` client and tools built on it work
unchanged.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from r1.engine.sampling import R1_TEMPERATURE, R1_TOP_P
from r1.serve.errors import APIError, bad_request
from r1.serve.guard import REFUSAL
from r1.serve.openai import ERRORS
from r1.serve.prompting import Prepared, render_chat, render_raw, resolve_max_tokens
from r1.serve.state import ServerState
from r1.serve.stream import ChoiceStream, TokenText, arguments_object, finite

_NAMES = {"max_tokens": "options.num_predict", "temperature": "options.temperature", "top_p": "options.top_p",
          "top_k": "options.top_k", "min_p": "options.min_p", "repetition_penalty": "options.repeat_penalty",
          "presence_penalty": "options.presence_penalty", "frequency_penalty": "options.frequency_penalty",
          "stop": "options.stop", "logprobs": "top_logprobs"}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # "5" is not 5, false is not 0


class Options(_Lenient):
    num_predict: int | None = Field(default=None, ge=-2, le=2**31 - 1)
    temperature: float | None = Field(default=None, ge=0, le=100)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)
    min_p: float | None = Field(default=None, ge=0, lt=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: list[str] | None = Field(default=None, max_length=16)
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    num_ctx: int | None = Field(default=None, ge=1)


class ToolFunctionCall(_Lenient):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(_Lenient):
    function: ToolFunctionCall


class OllamaMessage(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None  # dropped: earlier reasoning never reaches the model
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None


Think = bool | Literal["high", "medium", "low"] | None
Format = Literal["", "json"] | dict[str, Any] | None


class _Gen(_Lenient):
    model: str = Field(min_length=1)
    stream: bool = True
    think: Think = None
    format: Format = None
    options: Options | None = None
    keep_alive: float | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class ChatRequest(_Gen):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)


class GenerateRequest(_Gen):
    prompt: str | None = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class ShowRequest(_Lenient):
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool | None = None


def _ts() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _ndjson(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _think(think: Think) -> bool | None:
    return None if think is None else bool(think)


def router(st: ServerState) -> APIRouter:
    r = APIRouter()

    @r.get("/api/version")
    async def version() -> dict:
        from importlib.metadata import PackageNotFoundError, version as pkg_version

        try:
            return {"version": pkg_version("r1")}
        except PackageNotFoundError:
            return {"version": "0.0.0"}

    @r.get("/api/tags", responses=ERRORS)
    async def tags() -> dict:
        st.require_ready()
        return {"models": [{"name": st.info.name, **_model_entry(st)}]}

    @r.get("/api/ps", responses=ERRORS)
    async def ps() -> dict:
        st.require_ready()
        return {"models": [{"name": st.info.name, **_model_entry(st), "expires_at": "2999-01-01T00:00:00Z",
                            "size_vram": 0, "context_length": st.info.context_length}]}

    @r.post("/api/show", responses=ERRORS)
    async def show(body: ShowRequest) -> dict:
        name = body.model or body.name
        if not name:
            raise bad_request("model is required", "model")
        st.check_model(name)
        st.require_ready()
        caps = ["completion"] + [c for c, ok in st.capabilities.items() if ok]
        arch = st.info.family
        return {"modelfile": f"# served by r1\nFROM {st.info.path or st.info.name}\n",
                "parameters": f"temperature {R1_TEMPERATURE}\ntop_p {R1_TOP_P}",
                "template": st.tokenizer.chat_template or "", "details": _details(st),
                "model_info": {"general.architecture": arch, "general.parameter_count": st.info.parameters,
                               f"{arch}.context_length": st.info.context_length},
                "capabilities": caps, "modified_at": _iso(st.info.created)}

    @r.post("/api/chat", responses=ERRORS)
    async def chat(body: ChatRequest, request: Request):
        st.check_model(body.model)
        st.admit()
        if not body.messages:  # Ollama's "load the model" request
            return _done_only(st, body.stream, {"message": {"role": "assistant", "content": ""}})
        messages = []
        for i, m in enumerate(body.messages):
            if m.images:
                raise bad_request("image inputs are not supported", f"messages[{i}].images")
            d: dict = {"role": m.role, "content": m.content or ""}
            if m.tool_calls:
                d["tool_calls"] = [{"type": "function", "function": {"name": t.function.name, "arguments":
                                    t.function.arguments if isinstance(t.function.arguments, str)
                                    else json.dumps(t.function.arguments)}} for t in m.tool_calls]
            if m.tool_name:
                d["name"] = m.tool_name
            messages.append(d)
        prep = await asyncio.to_thread(render_chat, st.tokenizer, messages, body.tools or None, _think(body.think),
                                       st.info.name)  # off the event loop: see openai.py
        guard_text = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
        return await _run(st, request, body, prep, guard_text, "ollama_chat", parse_tools=bool(body.tools))

    @r.post("/api/generate", responses=ERRORS)
    async def generate(body: GenerateRequest, request: Request):
        st.check_model(body.model)
        st.admit()
        if body.images:
            raise bad_request("image inputs are not supported", "images")
        if body.suffix:
            raise bad_request("suffix (fill-in-the-middle) is not supported", "suffix")
        if body.template:
            raise bad_request("a per-request template is not supported; the model's chat template is used", "template")
        if not body.prompt:
            return _done_only(st, body.stream, {"response": ""})
        if body.raw:
            prep = await asyncio.to_thread(render_raw, st.tokenizer, body.prompt)
        else:
            msgs = ([{"role": "system", "content": body.system}] if body.system else []) + \
                   [{"role": "user", "content": body.prompt}]
            prep = await asyncio.to_thread(render_chat, st.tokenizer, msgs, None, _think(body.think), st.info.name)
        if body.context:
            vocab = st.engine.engine.model.config.vocab_size
            if any(not 0 <= t < vocab for t in body.context):
                raise bad_request(f"context has token ids outside the vocabulary [0, {vocab})", "context")
            prep = Prepared(prep.prompt, list(body.context) + prep.ids, prep.think_in_prompt)
        return await _run(st, request, body, prep, body.prompt + "\n" + (body.system or ""), "ollama_generate",
                          raw=body.raw)

    return r


async def _run(st: ServerState, request: Request, body: _Gen, prep: Prepared, guard_text: str, endpoint: str,
               parse_tools: bool = False, raw: bool = False):
    o = body.options or Options()
    n_predict = o.num_predict if o.num_predict is not None and o.num_predict >= 0 else None
    if o.num_predict == 0:
        n_predict = None  # Ollama treats 0 like "no limit" in practice
    max_tokens = resolve_max_tokens(len(prep.ids), n_predict, st.info.context_length, "options.num_predict",
                                    st.default_max_tokens)
    procs = None
    if body.format == "json":
        procs = await asyncio.to_thread(st.processors, "json_object", None, prep, "format")
    elif isinstance(body.format, dict):
        procs = await asyncio.to_thread(st.processors, "json_schema", body.format, prep, "format")
    params = st.sampling(_NAMES, temperature=o.temperature, top_p=o.top_p, top_k=o.top_k, min_p=o.min_p,
                         max_tokens=max_tokens, seed=None if o.seed is None else o.seed % 2**63, stop=o.stop,
                         repetition_penalty=o.repeat_penalty, presence_penalty=o.presence_penalty,
                         frequency_penalty=o.frequency_penalty,
                         logprobs=(body.top_logprobs or 0) if body.logprobs else None, logits_processors=procs,
                         thinking_budget=st.default_thinking_budget, skip_special_tokens=False if parse_tools else None)
    chat = endpoint == "ollama_chat"
    t0 = time.monotonic()
    if await st.check_prompt(guard_text):
        final = {"done": True, "done_reason": "content_filter", **_timings(t0, t0, time.monotonic(), len(prep.ids), 0)}
        part = {"message": {"role": "assistant", "content": REFUSAL}} if chat else {"response": REFUSAL}
        return _done_only(st, body.stream, {**part, **final})
    checker = st.guard.output_checker() if st.guard else None
    choice = ChoiceStream(0, prep.think_in_prompt, split_reasoning=not raw, parse_tools=parse_tools, checker=checker)
    gen = await st.generate(request, endpoint, prep, params, [choice])
    tt = TokenText(st.tokenizer)

    _out_ids: list[list[int]] = [[]]  # the generated ids so far: Ollama's `context` returns them

    def piece(content: str, thinking: str, calls=None, lps=None) -> dict:
        if chat:
            msg: dict = {"role": "assistant", "content": content}
            if thinking:
                msg["thinking"] = thinking
            if calls:
                msg["tool_calls"] = [{"function": {"name": t.name, "arguments": arguments_object(t.arguments)}}
                                     for t in calls]
            out = {"message": msg}
        else:
            out = {"response": content}
            if thinking:
                out["thinking"] = thinking
        if lps:
            out["logprobs"] = [{"token": tt(e["token_id"]), "logprob": finite(e["logprob"]),
                                "top_logprobs": [{"token": tt(t), "logprob": finite(lp)} for t, lp in e.get("top", [])]}
                               for e in lps]
        return out

    def final(first: float | None, cached: int) -> dict:
        end = time.monotonic()
        d = {"done": True, "done_reason": choice.finish_reason,
             **_timings(t0, first or end, end, len(prep.ids) - cached, choice.completion_tokens)}
        if not chat:
            d["context"] = prep.ids + _out_ids[0]
        return d

    if body.stream:
        async def lines():
            first, cached = None, 0
            try:
                async for out, (d,) in gen:
                    cached = out.num_cached_tokens
                    _out_ids[0] = out.outputs[0].token_ids
                    if first is None and out.outputs[0].token_ids:
                        first = time.monotonic()
                    if d.reasoning or d.content or d.tool_calls:
                        yield _ndjson({"model": st.info.name, "created_at": _ts(),
                                       **piece(d.content, d.reasoning, d.tool_calls, d.logprobs), "done": False})
            except APIError as e:
                yield _ndjson({"error": e.message})
                return
            if choice.finish_reason is None:
                return  # aborted: the client is gone
            yield _ndjson({"model": st.info.name, "created_at": _ts(), **piece("", ""), **final(first, cached)})
        return StreamingResponse(lines(), media_type="application/x-ndjson")
    first, cached = None, 0
    async for out, _ in gen:
        cached = out.num_cached_tokens
        _out_ids[0] = out.outputs[0].token_ids
        if first is None and out.outputs[0].token_ids:
            first = time.monotonic()
    if choice.finish_reason is None:
        raise APIError(499, "request aborted")
    return {"model": st.info.name, "created_at": _ts(),
            **piece(choice.content_text, choice.reasoning_text, choice.tool_calls,
                    choice.logprobs if body.logprobs else None), **final(first, cached)}


def _timings(t0: float, first: float, end: float, prompt_evals: int, evals: int) -> dict:
    ns = 1_000_000_000
    return {"total_duration": int((end - t0) * ns), "load_duration": 0, "prompt_eval_count": max(prompt_evals, 0),
            "prompt_eval_duration": int((first - t0) * ns), "eval_count": evals,
            "eval_duration": int((end - first) * ns)}


def _done_only(st: ServerState, stream: bool, body: dict):
    obj = {"model": st.info.name, "created_at": _ts(), "done": True, "done_reason": "load", **body}
    if not stream:
        return obj

    async def one():
        yield _ndjson(obj)
    return StreamingResponse(one(), media_type="application/x-ndjson")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _size_label(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}".replace(".0", "")
    return str(n)


def _details(st: ServerState) -> dict:
    return {"parent_model": "", "format": st.info.format, "family": st.info.family, "families": [st.info.family],
            "parameter_size": _size_label(st.info.parameters), "quantization_level": st.info.quantization}


def _model_entry(st: ServerState) -> dict:
    # a stable identifier of what is served (Ollama's is its manifest's hash; we have no manifest)
    digest = hashlib.sha256(f"{st.info.name}|{st.info.path}|{st.info.size_bytes}".encode()).hexdigest()
    return {"model": st.info.name, "modified_at": _iso(st.info.created), "size": st.info.size_bytes,
            "digest": digest, "details": _details(st)}
