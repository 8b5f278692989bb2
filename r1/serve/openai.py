"""The OpenAI/DeepSeek-compatible API: /v1/chat/completions, /v1/completions, /v1/models.

Chat answers carry `reasoning_content` apart from `content`, in messages and in stream deltas, as
DeepSeek's API does; tool calls written in DeepSeek's tool-call tokens come back as `tool_calls`;
`response_format` and a forced `tool_choice` are enforced by grammar-constrained decoding once the
reasoning has ended (r1/serve/structured.py).
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from r1.chat.reasoning import prompt_opens_reasoning
from r1.engine.sampling import LogitBias
from r1.serve.errors import APIError, bad_request
from r1.serve.guard import REFUSAL
from r1.serve.openai_schema import ChatCompletionRequest, ChatMessage, CompletionRequest, NamedToolChoice
from r1.serve.prompting import Prepared, render_chat, render_raw, resolve_max_tokens, text_of
from r1.serve.state import ServerState
from r1.serve.stream import ChoiceStream, TokenText, finite, new_id, now_s, openai_logprobs, tool_call_dicts

ERRORS = {400: {"description": "invalid request (the error names the parameter)"},
          401: {"description": "missing or wrong API key"}, 404: {"description": "unknown model"},
          429: {"description": "the waiting queue is full"}, 503: {"description": "loading or shutting down"}}
# SamplingParams field -> the API parameter a client set
_NAMES = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
          "min_p": "min_p", "n": "n", "logprobs": "top_logprobs", "repetition_penalty": "repetition_penalty",
          "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
          "thinking_budget": "thinking_budget", "stop": "stop", "seed": "seed"}


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _message_dict(m: ChatMessage, i: int) -> dict:
    role = "system" if m.role == "developer" else m.role
    d: dict = {"role": role, "content": text_of(m.content, f"messages[{i}].content")}
    if m.name:
        d["name"] = m.name
    if m.tool_calls:
        d["tool_calls"] = [{"id": t.id, "type": t.type, "function": {"name": t.function.name,
                            "arguments": t.function.arguments if isinstance(t.function.arguments, str)
                            else json.dumps(t.function.arguments)}} for t in m.tool_calls]
    if m.tool_call_id:
        d["tool_call_id"] = m.tool_call_id
    return d


def _seed(seed: int | None) -> int | None:
    return None if seed is None else seed % (2**63)


def _usage(prep: Prepared, choices: list[ChoiceStream], cached: int) -> dict:
    completion = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": len(prep.ids), "completion_tokens": completion, "total_tokens": len(prep.ids) + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": sum(c.reasoning_tokens for c in choices)}}


def _logit_bias(st: ServerState, body) -> list:
    """`logit_bias` as a logits processor ([] when absent); bad ids or values are a 400 naming them."""
    if not body.logit_bias:
        return []
    try:
        bias = {int(k): v for k, v in body.logit_bias.items()}
    except ValueError:
        bad = next(k for k in body.logit_bias if not k.strip().lstrip("-").isdigit())
        raise bad_request(f"logit_bias keys are token ids, got {bad!r}", "logit_bias") from None
    try:
        return [LogitBias(bias, st.engine.engine.model.config.vocab_size)]
    except ValueError as e:
        raise bad_request(str(e), "logit_bias") from None


def router(st: ServerState) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/models", responses=ERRORS)
    async def list_models() -> dict:
        return {"object": "list", "data": [_model_card(st)]}

    @r.get("/v1/models/{model}", responses=ERRORS)
    async def get_model(model: str) -> dict:
        st.check_model(model)
        return _model_card(st)

    @r.post("/v1/chat/completions", responses=ERRORS)
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        st.check_model(body.model)
        st.admit()
        messages = [_message_dict(m, i) for i, m in enumerate(body.messages)]
        use_tools = bool(body.tools) and body.tool_choice != "none"
        tools = [t.model_dump(exclude_none=True) for t in body.tools] if use_tools else None
        thinking = None
        budget = body.thinking_budget if body.thinking_budget is not None else st.default_thinking_budget
        if body.thinking is not None:
            thinking = body.thinking.type == "enabled"
            budget = body.thinking.budget_tokens if body.thinking.budget_tokens is not None else budget
        # rendering, tokenizing and compiling a grammar can take seconds on hostile input: off the event
        # loop, so other clients (and /health) are answered meanwhile
        prep = await asyncio.to_thread(render_chat, st.tokenizer, messages, tools, thinking, st.info.name)
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        max_tokens = resolve_max_tokens(len(prep.ids), body.max_completion_tokens or body.max_tokens,
                                        st.info.context_length, param, st.default_max_tokens)
        procs = (await asyncio.to_thread(_structured, st, body, prep, tools) or []) + _logit_bias(st, body)
        params = st.sampling(_NAMES, temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                             min_p=body.min_p, max_tokens=max_tokens, seed=_seed(body.seed),
                             stop=[body.stop] if isinstance(body.stop, str) else body.stop, n=body.n,
                             logprobs=(body.top_logprobs or 0) if body.logprobs else None,
                             presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                             repetition_penalty=body.repetition_penalty, thinking_budget=budget,
                             logits_processors=procs, skip_special_tokens=False if use_tools else None)
        guard_text = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
        cid, created = new_id("chatcmpl"), now_s()
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if await st.check_prompt(guard_text):
            return _refusal(st, cid, created, prep, body.n, body.stream, include_usage)
        checker = st.guard.output_checker if st.guard else (lambda: None)
        choices = [ChoiceStream(i, prep.think_in_prompt, parse_tools=use_tools, checker=checker())
                   for i in range(body.n)]
        gen = await st.generate(request, "chat", prep, params, choices)
        tt = TokenText(st.tokenizer)
        if body.stream:
            return StreamingResponse(_chat_stream(st, gen, cid, created, prep, choices, body.logprobs, include_usage, tt),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        cached = 0
        async for out, _ in gen:
            cached = out.num_cached_tokens
        if any(c.finish_reason is None for c in choices):  # the client went away: nobody reads this
            return JSONResponse({"error": {"message": "request aborted", "type": "aborted"}}, status_code=499)
        return {"id": cid, "object": "chat.completion", "created": created, "model": st.info.name,
                "system_fingerprint": None,
                "choices": [{"index": c.index, "message": _message(c),
                             "logprobs": openai_logprobs(c.logprobs, tt) if body.logprobs else None,
                             "finish_reason": c.finish_reason} for c in choices],
                "usage": _usage(prep, choices, cached)}

    @r.post("/v1/completions", responses=ERRORS)
    async def completions(body: CompletionRequest, request: Request):
        st.check_model(body.model)
        st.admit()
        if body.suffix:
            raise bad_request("suffix (fill-in-the-middle) is not supported", "suffix")
        prompts = body.prompt
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        vocab = st.engine.engine.model.config.vocab_size
        preps = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                preps.append(await asyncio.to_thread(render_raw, st.tokenizer, p))
            else:
                if any(t >= vocab for t in p):
                    raise bad_request(f"prompt[{i}] has token ids outside the vocabulary [0, {vocab})", "prompt")
                text = st.tokenizer.decode(p, skip_special_tokens=False)
                preps.append(Prepared(text, list(p), prompt_opens_reasoning(text)))
        cid, created = new_id("cmpl"), now_s()
        runs = []
        for k, prep in enumerate(preps):
            max_tokens = resolve_max_tokens(len(prep.ids), body.max_tokens if body.max_tokens is not None else 16,
                                            st.info.context_length, "max_tokens")
            params = st.sampling(_NAMES | {"logprobs": "logprobs"}, temperature=body.temperature, top_p=body.top_p,
                                 top_k=body.top_k, min_p=body.min_p, max_tokens=max_tokens, seed=_seed(body.seed),
                                 stop=[body.stop] if isinstance(body.stop, str) else body.stop, n=body.n,
                                 logprobs=body.logprobs, presence_penalty=body.presence_penalty,
                                 frequency_penalty=body.frequency_penalty, repetition_penalty=body.repetition_penalty,
                                 logits_processors=_logit_bias(st, body))
            if await st.check_prompt(prep.prompt):
                raise APIError(400, REFUSAL, "prompt", "content_filter")
            choices = [ChoiceStream(k * body.n + j, False, split_reasoning=False) for j in range(body.n)]
            runs.append((prep, choices, params))
        gens = []
        try:
            for prep, choices, params in runs:
                # choices are looked up by their position in the request; their .index is the API's
                gens.append(await st.generate(request, "completions", prep, params, choices))
        except BaseException:
            for g in gens:
                await g.aclose()
            raise
        tt = TokenText(st.tokenizer)
        if body.stream:
            return StreamingResponse(_completion_stream(st, gens, runs, cid, created, body, tt),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        cached = await asyncio.gather(*[_drain(g) for g in gens])
        out_choices = []
        for prep, choices, _ in runs:
            for c in choices:
                text = (prep.prompt if body.echo else "") + c.content_text
                out_choices.append({"index": c.index, "text": text, "finish_reason": c.finish_reason,
                                    "logprobs": _legacy_logprobs(c.logprobs, tt) if body.logprobs is not None else None})
        all_choices = [c for _, cs, _ in runs for c in cs]
        usage = _usage(Prepared("", [t for p, _, _ in runs for t in p.ids], False), all_choices, sum(cached))
        return {"id": cid, "object": "text_completion", "created": created, "model": st.info.name,
                "choices": out_choices, "usage": usage}

    return r


async def _drain(gen) -> int:
    cached = 0
    async for out, _ in gen:
        cached = out.num_cached_tokens
    return cached


def _model_card(st: ServerState) -> dict:
    return {"id": st.info.name, "object": "model", "created": st.info.created, "owned_by": "r1",
            "max_model_len": st.info.context_length}


def _structured(st: ServerState, body: ChatCompletionRequest, prep: Prepared, tools: list[dict] | None):
    rf = body.response_format
    forced = tools and (body.tool_choice == "required" or isinstance(body.tool_choice, NamedToolChoice))
    if rf is not None and rf.type != "text" and forced:
        raise bad_request("response_format and a forced tool_choice cannot be combined", "response_format")
    if forced:
        chosen = tools if body.tool_choice == "required" else \
            [t for t in tools if t["function"]["name"] == body.tool_choice.function.name]
        return st.processors("tools", chosen, prep, "tools")
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return st.processors("json_object", None, prep, "response_format")
    return st.processors("json_schema", rf.json_schema.schema_, prep, "response_format.json_schema.schema")


def _message(c: ChoiceStream) -> dict:
    msg = {"role": "assistant", "content": c.content_text if (c.content_text or not c.tool_calls) else None,
           "reasoning_content": c.reasoning_text or None}
    if c.tool_calls:
        msg["tool_calls"] = tool_call_dicts(c.tool_calls)
    return msg


def _refusal(st: ServerState, cid: str, created: int, prep: Prepared, n: int, stream: bool, include_usage: bool):
    usage = {"prompt_tokens": len(prep.ids), "completion_tokens": 0, "total_tokens": len(prep.ids),
             "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
    if not stream:
        return {"id": cid, "object": "chat.completion", "created": created, "model": st.info.name,
                "choices": [{"index": i, "message": {"role": "assistant", "content": REFUSAL, "reasoning_content": None},
                             "logprobs": None, "finish_reason": "content_filter"} for i in range(n)],
                "usage": usage}

    async def events():
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": st.info.name}
        for i in range(n):
            yield _sse({**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": REFUSAL},
                                             "logprobs": None, "finish_reason": "content_filter"}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


async def _chat_stream(st, gen, cid, created, prep, choices, want_logprobs, include_usage, tt) -> AsyncIterator[str]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": st.info.name,
            "system_fingerprint": None}
    if include_usage:
        base["usage"] = None
    pending_lp: dict[int, list] = {c.index: [] for c in choices}

    def chunk(i: int, delta: dict, finish: str | None = None) -> str:
        lp = openai_logprobs(pending_lp[i], tt) if want_logprobs and pending_lp[i] else None
        pending_lp[i] = []
        return _sse({**base, "choices": [{"index": i, "delta": delta, "logprobs": lp, "finish_reason": finish}]})

    cached = 0
    try:
        for c in choices:
            yield chunk(c.index, {"role": "assistant", "content": ""})
        async for out, deltas in gen:
            cached = out.num_cached_tokens
            for o, d in zip(out.outputs, deltas):
                i = o.index
                pending_lp[i] += d.logprobs
                if d.reasoning:
                    yield chunk(i, {"reasoning_content": d.reasoning})
                if d.content:
                    yield chunk(i, {"content": d.content})
                if d.tool_calls:
                    yield chunk(i, {"tool_calls": tool_call_dicts(d.tool_calls, with_index=True)})
                if d.finish_reason:
                    yield chunk(i, {}, d.finish_reason)
    except APIError as e:
        yield _sse({"error": {"message": e.message, "type": "server_error", "param": None, "code": e.code}})
        return
    if any(c.finish_reason is None for c in choices):
        return  # aborted: the client is gone
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(prep, choices, cached)})
    yield "data: [DONE]\n\n"


async def _completion_stream(st, gens, runs, cid, created, body: CompletionRequest, tt) -> AsyncIterator[str]:
    base = {"id": cid, "object": "text_completion", "created": created, "model": st.info.name}
    q: asyncio.Queue = asyncio.Queue()
    cached = [0] * len(gens)

    async def pump(k, gen):
        try:
            async for out, deltas in gen:
                cached[k] = out.num_cached_tokens
                await q.put((k, out, deltas))
        except BaseException as e:  # noqa: BLE001 -- forwarded to the writer
            await q.put(e)
        finally:
            await q.put(None)

    tasks = [asyncio.create_task(pump(k, g)) for k, g in enumerate(gens)]
    try:
        if body.echo:
            for prep, choices, _ in runs:
                for c in choices:
                    yield _sse({**base, "choices": [{"index": c.index, "text": prep.prompt, "logprobs": None,
                                                     "finish_reason": None}]})
        live = len(tasks)
        while live:
            item = await q.get()
            if item is None:
                live -= 1
                continue
            if isinstance(item, BaseException):
                msg = item.message if isinstance(item, APIError) else str(item)
                yield _sse({"error": {"message": msg, "type": "server_error", "param": None, "code": None}})
                return
            k, out, deltas = item
            choices = runs[k][1]
            for o, d in zip(out.outputs, deltas):
                if d.content or d.finish_reason:
                    lp = _legacy_logprobs(d.logprobs, tt) if body.logprobs is not None else None
                    yield _sse({**base, "choices": [{"index": choices[o.index].index, "text": d.content,
                                                     "logprobs": lp, "finish_reason": d.finish_reason}]})
        all_choices = [c for _, cs, _ in runs for c in cs]
        if any(c.finish_reason is None for c in all_choices):
            return
        if body.stream_options and body.stream_options.include_usage:
            usage = _usage(Prepared("", [t for p, _, _ in runs for t in p.ids], False), all_choices, sum(cached))
            yield _sse({**base, "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    finally:
        for t in tasks:
            t.cancel()
        for g in gens:
            await g.aclose()


def _legacy_logprobs(entries: list[dict], tt: TokenText) -> dict:
    tokens = [tt(e["token_id"]) for e in entries]
    offsets, pos = [], 0
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {"tokens": tokens, "token_logprobs": [finite(e["logprob"]) for e in entries],
            "top_logprobs": [{tt(t): finite(lp) for t, lp in e.get("top", [])} for e in entries], "text_offset": offsets}
