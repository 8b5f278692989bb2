"""One assistant turn from chat messages: render the template, generate, split the reasoning
from the answer -- the path `r1 run`, `r1 chat` and evaluation share."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from r1.engine.generate import generate
from r1.engine.sampling import SamplingParams


@dataclass
class Turn:
    reasoning: str = ""
    content: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    seconds: float = 0.0
    token_ids: list[int] = field(default_factory=list)


def respond(model, tok, messages: list[dict], params: SamplingParams, raw: bool = False,
            on_delta=None) -> Turn:
    """One assistant turn: render the chat template, generate, split reasoning from content.
    on_delta(reasoning_delta, content_delta) streams the two parts as they arrive."""
    from r1.chat.reasoning import ReasoningStreamParser, prompt_opens_reasoning

    if raw:
        prompt = messages[-1]["content"]
        ids = tok.encode(prompt, add_special_tokens=True)
    else:
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True)
        ids = tok.encode(prompt, add_special_tokens=False)
    parser = ReasoningStreamParser(think_in_prompt=prompt_opens_reasoning(prompt))
    detok = tok.detokenizer(prompt_ids=ids)
    turn = Turn(prompt_tokens=len(ids))
    parts = ([], [])

    def emit(pair):
        for store, d in zip(parts, pair):
            store.append(d)
        if on_delta and (pair[0] or pair[1]):
            on_delta(*pair)

    def on_token(_row: int, t: int) -> None:
        emit(parser.feed(detok.step(t)))

    t0 = time.perf_counter()
    (c,) = generate(model, [ids], params, tokenizer=tok, on_token=on_token)
    emit(parser.feed(detok.finish()))
    emit(parser.finish())
    turn.seconds = time.perf_counter() - t0
    turn.reasoning, turn.content = "".join(parts[0]), "".join(parts[1])
    if params.stop and c.finish_reason == "stop":  # generate cut the text at the stop string
        from r1.chat.reasoning import split_reasoning

        turn.reasoning, turn.content = split_reasoning(c.text, parser.think_in_prompt)
    turn.completion_tokens, turn.finish_reason, turn.token_ids = len(c.token_ids), c.finish_reason, c.token_ids
    return turn
