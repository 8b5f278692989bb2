"""Render Jinja2 chat templates exactly as `transformers` does.

Chat templates ship inside model files written by strangers, so they run in Jinja's immutable
sandbox. Everything a template can observe mirrors transformers' `render_jinja_template`
(transformers/utils/chat_template_utils.py): trim_blocks + lstrip_blocks, the loopcontrols
extension, a `{% generation %}` block that marks assistant text, `raise_exception`, `strftime_now`,
a `tojson` that does not HTML-escape, and the variables `messages`, `tools`, `documents`,
`add_generation_prompt` plus the special-token strings and any caller keyword arguments. Messages
are normalized the same way too: keys whose value is None are dropped, reasoning given as
`reasoning`/`thinking`/`reasoning_content` is visible under all three names the templates read,
and only plain JSON-like data reaches the sandbox.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from r1.chat.template_budget import SPENDING, BudgetedEnvironment, RenderBudget, Spending, budgeted_range
from r1.errors import R1Error

Message = Mapping[str, Any]

# Reasoning can arrive under any of these names; templates read `reasoning_content` (DeepSeek, Qwen)
# or `thinking` (gpt-oss), so every copy is filled (transformers' `_alias_reasoning_fields`).
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

# Context name under which a render passes its generation-span recorder. The template never sees
# it unless it asks for it by this exact name, and it only ever holds plain lists.
_TRACKER = "__r1_generation_tracker"


class ChatTemplateError(R1Error, ValueError):
    """A chat template that does not compile, or that fails (or refuses) to render a conversation."""


class _GenerationTracker:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.spans: list[tuple[int, int]] = []


class _GenerationExtension(jinja2.ext.Extension):
    # `{% generation %}...{% endgeneration %}` wraps assistant text in templates made for training
    # (assistant-only loss masks). The recorder travels in the render context rather than on the
    # extension, so one compiled template can render from several threads at once.
    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_mark", [jinja2.nodes.Name(_TRACKER, "load")])
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    @staticmethod
    def _mark(tracker: Any, caller: Any) -> str:
        text = caller()
        if isinstance(tracker, _GenerationTracker):
            # Top-level output is yielded block by block, so everything rendered before this
            # block is already in `tracker.blocks` (same technique, same limits as transformers:
            # a generation block inside a macro or a `{% set %}` block is not tracked correctly).
            start = sum(len(b) for b in tracker.blocks)
            tracker.spans.append((start, start + len(text)))
        return text


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML; prompts must carry them verbatim.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class _TemplateDict:
    # `dict(...)` inside a template, without exposing the `dict` type itself.
    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    # Namespaces refuse underscore attributes, so a template cannot reach Python internals via them.
    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - Jinja's own signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set underscore attribute {name!r} on a namespace")


def _environment() -> BudgetedEnvironment:
    env = BudgetedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationExtension, jinja2.ext.loopcontrols]
    )
    env.globals["range"] = budgeted_range  # the sandbox's own range, with its items charged to the render
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _TemplateNamespace
    return env


def plain_data(value: Any) -> Any:
    """Rebuild `value` from JSON-like types only; anything else becomes a `<TypeName>` placeholder.

    The sandbox only knows the methods of the builtin types are safe; a tensor or an image inside a
    message has methods that write files, so it must never reach a template.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v) for v in value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return plain_data(value.item())  # numpy / torch scalars
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())  # pydantic models, e.g. a server's request messages
    return f"<{type(value).__name__}>"


def normalize_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """The conversation as the template sees it (a fresh copy; the caller's messages are untouched)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of message dicts, got {type(messages).__name__}")
    if len(messages) == 0:
        raise ValueError("cannot render an empty conversation: give at least one message")
    out = []
    for i, raw in enumerate(messages):
        message = plain_data(raw)
        if not isinstance(message, dict):
            raise TypeError(f"messages[{i}] must be a dict (or dataclass / pydantic model), got {type(raw).__name__}")
        # OpenAI clients send `content: null` next to tool calls; templates handle a missing key,
        # but many render the literal "None" or crash on a present null.
        message = {k: v for k, v in message.items() if v is not None}
        if not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{i}] has no string 'role': {message!r}")
        reasoning = next((message[k] for k in REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def normalize_tools(tools: Sequence[Any] | None) -> list[Any] | None:
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise TypeError(f"tools must be a list of JSON-schema dicts, got {type(tools).__name__}")
    out = []
    for i, tool in enumerate(tools):
        tool = plain_data(tool)
        if not isinstance(tool, dict):
            raise TypeError(f"tools[{i}] must be a JSON-schema dict (OpenAI tool format), got {type(tool).__name__}")
        out.append(tool)
    return out


class ChatTemplate:
    """One compiled chat template. `origin` names where it came from, for error messages."""

    def __init__(self, source: str, origin: str = "chat template", budget: RenderBudget = RenderBudget()) -> None:
        """budget: what one render may spend (characters, range() items, seconds): template_budget.py."""
        if not isinstance(source, str):
            raise TypeError(f"{origin}: a chat template must be a string, got {type(source).__name__}")
        self.source = source
        self.origin = origin
        self.budget = budget
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(f"{origin}: Jinja syntax error on line {e.lineno}: {e.message}") from e

    def __repr__(self) -> str:
        return f"ChatTemplate(origin={self.origin!r}, {len(self.source)} chars)"

    def _variables(self, messages: Sequence[Any], add_generation_prompt: bool, tools: Sequence[Any] | None,
                   documents: Sequence[Any] | None, variables: dict[str, Any]) -> dict[str, Any]:
        if documents is not None and not all(isinstance(d, Mapping) for d in documents):
            raise TypeError("documents must be a list of dicts (usually with 'title' and 'text' keys)")
        return {
            **plain_data(variables),
            "messages": normalize_messages(messages),
            "tools": normalize_tools(tools),
            "documents": plain_data(documents),
            "add_generation_prompt": bool(add_generation_prompt),
        }

    def render(self, messages: Sequence[Any], *, add_generation_prompt: bool = False,
               tools: Sequence[Any] | None = None, documents: Sequence[Any] | None = None,
               **variables: Any) -> str:
        """Render one conversation. `variables` are what the template reads besides the messages:
        the special-token strings (`bos_token`, `eos_token`, ...) and flags like `enable_thinking`."""
        text, _ = self._render(messages, add_generation_prompt, tools, documents, variables, track=False)
        return text

    def render_with_generation_spans(self, messages: Sequence[Any], *, add_generation_prompt: bool = False,
                                     tools: Sequence[Any] | None = None, documents: Sequence[Any] | None = None,
                                     **variables: Any) -> tuple[str, list[tuple[int, int]]]:
        """Render and also return the [start, end) character spans of `{% generation %}` blocks:
        the assistant text an SFT loss mask keeps. Empty when the template has no such blocks."""
        return self._render(messages, add_generation_prompt, tools, documents, variables, track=True)

    def _render(self, messages: Sequence[Any], add_generation_prompt: bool, tools: Sequence[Any] | None,
                documents: Sequence[Any] | None, variables: dict[str, Any],
                track: bool) -> tuple[str, list[tuple[int, int]]]:
        context = self._variables(messages, add_generation_prompt, tools, documents, variables)
        tracker = _GenerationTracker() if track else None
        context[_TRACKER] = tracker
        spending = Spending(self.budget)
        token = SPENDING.set(spending)
        try:
            blocks = tracker.blocks if tracker is not None else []
            for block in self._template.generate(context):
                spending.output(block)
                blocks.append(block)
            return "".join(blocks), (tracker.spans if tracker is not None else [])
        except jinja2.TemplateError as e:
            # raise_exception(), undefined names, sandbox violations: the template's own words,
            # prefixed with which template said them.
            raise ChatTemplateError(f"{self.origin}: {type(e).__name__}: {e}") from e
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, MemoryError,
                RecursionError) as e:
            # e.g. `'<｜User｜>' + content` with a list content: a template bug or unsupported input
            raise ChatTemplateError(f"{self.origin}: failed to render: {type(e).__name__}: {e}") from e
        finally:
            SPENDING.reset(token)


def select_template(templates: Mapping[str, str], name: str | None = None,
                    tools: Sequence[Any] | None = None, origin: str = "tokenizer") -> str:
    """Pick one of a model's named templates the way transformers' `get_chat_template` does: an
    explicit name, else `tool_use` when tools are given and it exists, else `default`."""
    if name is not None:
        if name not in templates:
            raise ChatTemplateError(f"{origin}: no chat template named {name!r}; it has {sorted(templates)}")
        return templates[name]
    if tools is not None and "tool_use" in templates:
        return templates["tool_use"]
    if "default" in templates:
        return templates["default"]
    if not templates:
        raise ChatTemplateError(f"{origin}: has no chat template; pass one explicitly")
    raise ChatTemplateError(
        f"{origin}: has several chat templates and none named 'default'; choose one of {sorted(templates)}"
    )
