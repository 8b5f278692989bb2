"""From API messages to prompt token ids, shared by the OpenAI and Ollama front ends.

What both APIs need and neither should do twice: earlier turns' reasoning stripped (DeepSeek's API
never feeds old `reasoning_content` back to the model), thinking switched on or off, the context
length checked with both numbers in the message, and the thinking/tool capabilities of the loaded
chat template reported.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r1.chat.r1_template import THINK_CLOSE, THINK_OPEN
from r1.chat.reasoning import close_reasoning, prompt_opens_reasoning
from r1.chat.template import REASONING_FIELDS, ChatTemplateError
from r1.serve.errors import APIError, bad_request



@dataclass
class Prepared:
    prompt: str
    ids: list[int]
    think_in_prompt: bool


def template_capabilities(tokenizer) -> dict[str, bool]:
    src = "\n".join(getattr(tokenizer, "chat_templates", {}).values())
    return {"thinking": THINK_OPEN in src or "reasoning_content" in src or "enable_thinking" in src,
            "tools": "tools" in src}


def strip_reasoning(messages: Sequence[dict]) -> list[dict]:
    """Assistant turns lose their reasoning, whether it came as a field or inline in the content."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("role") == "assistant":
            for f in REASONING_FIELDS:
                m.pop(f, None)
            c = m.get("content")
            if isinstance(c, str) and THINK_CLOSE in c:
                m["content"] = c.split(THINK_CLOSE)[-1].lstrip()
        out.append(m)
    return out


def render_chat(tokenizer, messages: Sequence[dict], tools: Sequence[dict] | None = None,
                thinking: bool | None = None, model_name: str = "the model") -> Prepared:
    """thinking: None = the template's default, False = no reasoning, True = reasoning (400 when
    the model's template knows no thinking)."""
    caps = template_capabilities(tokenizer)
    if thinking and not caps["thinking"]:
        raise bad_request(f"{model_name!r} does not support thinking (its chat template has no <think> block)", "think")
    kwargs: dict[str, Any] = {}
    if thinking is not None:
        kwargs["enable_thinking"] = bool(thinking)  # Qwen3-style templates read it; others ignore it
    try:
        prompt = tokenizer.apply_chat_template(strip_reasoning(messages), add_generation_prompt=True,
                                               tools=list(tools) if tools else None, **kwargs)
    except ChatTemplateError as e:
        raise bad_request(f"cannot render the conversation with the model's chat template: {e}", "messages") from e
    except (TypeError, ValueError) as e:
        raise bad_request(f"cannot render the conversation: {e}", "messages") from e
    opens = prompt_opens_reasoning(prompt)
    if thinking is False and opens:
        prompt, opens = close_reasoning(prompt), False
    elif thinking and not opens and not prompt.rstrip().endswith(THINK_CLOSE):
        prompt, opens = prompt + THINK_OPEN + "\n", True
    return Prepared(prompt, tokenizer.encode(prompt, add_special_tokens=False), opens)


def render_raw(tokenizer, text: str) -> Prepared:
    """A prompt to continue as it is (completions API, Ollama `raw`): the tokenizer's BOS if it adds one."""
    ids = tokenizer.encode(text, add_special_tokens=True)
    return Prepared(text, ids, prompt_opens_reasoning(text))


def resolve_max_tokens(n_prompt: int, requested: int | None, max_model_len: int, param: str = "max_tokens",
                       default_cap: int | None = None) -> int:
    """The completion budget: what was asked, or the rest of the context; 400 with both numbers
    when the prompt and the budget do not fit."""
    if n_prompt == 0:
        raise bad_request("the prompt is empty", "messages")
    room = max_model_len - n_prompt
    if requested is None:
        if room < 1:
            raise bad_request(f"the prompt is {n_prompt} tokens, but this model's maximum context length is "
                              f"{max_model_len} tokens, which leaves no room for a completion", "messages",
                              "context_length_exceeded")
        return min(room, default_cap) if default_cap else room
    if n_prompt + requested > max_model_len:
        raise bad_request(f"this model's maximum context length is {max_model_len} tokens, but {n_prompt + requested} "
                          f"were requested ({n_prompt} in the prompt + {requested} for the completion); reduce the "
                          f"prompt or '{param}'", param, "context_length_exceeded")
    return requested


def text_of(content: Any, param: str) -> str:
    """OpenAI content: a string, null, or a list of parts of which only text is supported."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content):
        p = part if isinstance(part, dict) else part.model_dump()
        if p.get("type") != "text":
            raise APIError(400, f"content part type {p.get('type')!r} is not supported (text only)",
                           f"{param}[{i}].type")
        parts.append(p.get("text") or "")
    return "".join(parts)
