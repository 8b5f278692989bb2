"""One assistant turn from chat messages: render the template, generate through the engine,
split the reasoning from the answer -- the path `r1 run` and `r1 chat` share."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from r1.chat.reasoning import ReasoningStreamParser, prompt_opens_reasoning
from r1.engine.engine import LLM
from r1.engine.sampling import SamplingParams


@dataclass
class Turn:
    reasoning: str = ""
    content: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str = ""
    seconds: float = 0.0


def respond(llm: LLM, messages: list[dict], params: SamplingParams, raw: bool = False, on_delta=None,
            should_stop=None) -> Turn:
    """on_delta(reasoning_delta, content_delta) streams the two parts as they arrive.
    should_stop(): polled between engine steps; once true the reply ends there (finish_reason
    "abort", the request's blocks freed) with what was generated so far -- `r1 chat`'s Ctrl-C."""
    tok = llm.tokenizer
    if raw:
        prompt = messages[-1]["content"]
        ids = tok.encode(prompt, add_special_tokens=True)
    else:
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
        ids = tok.encode(prompt, add_special_tokens=False)
    room = llm.engine.max_model_len - len(ids)
    if room < 1:
        raise ValueError(f"the conversation ({len(ids)} tokens) fills the model's context of "
                         f"{llm.engine.max_model_len} tokens; start a new chat or shorten it")
    if params.max_tokens > room:  # as Ollama does at num_ctx: generate what fits, then stop ("length")
        params = dataclasses.replace(params, max_tokens=room)
    parser = ReasoningStreamParser(think_in_prompt=prompt_opens_reasoning(prompt))
    turn = Turn(prompt_tokens=len(ids))
    parts: tuple[list[str], list[str]] = ([], [])

    def emit(pair: tuple[str, str]) -> None:
        parts[0].append(pair[0])
        parts[1].append(pair[1])
        if on_delta and (pair[0] or pair[1]):
            on_delta(*pair)

    t0 = time.perf_counter()
    last = None
    stream = llm.stream(ids, params)
    for out in stream:
        emit(parser.feed(out.outputs[0].text_delta))
        last = out
        if should_stop is not None and should_stop():
            stream.close()  # its `finally` aborts the request
            break
    emit(parser.finish())
    turn.seconds = time.perf_counter() - t0
    turn.reasoning, turn.content = "".join(parts[0]), "".join(parts[1])
    if last is None:
        return turn
    o = last.outputs[0]
    # no finish reason yet: should_stop ended the reply
    turn.completion_tokens, turn.reasoning_tokens, turn.finish_reason = (len(o.token_ids), o.reasoning_tokens,
                                                                         o.finish_reason or "abort")
    return turn
