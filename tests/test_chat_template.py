"""Our Jinja renderer against transformers' (the peer) on templates that use every feature it offers."""
from __future__ import annotations

import dataclasses
from datetime import datetime

import jinja2
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from r1.chat.template import ChatTemplate, ChatTemplateError, select_template

transformers = pytest.importorskip("transformers")
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}

TEMPLATES = {
    # Layout whitespace handled by trim_blocks / lstrip_blocks, like most hand-written templates.
    "indented": """
{% for message in messages %}
    {% if message['role'] == 'user' %}
        {{ bos_token + '[U] ' + message['content'] + '\\n' }}
    {% elif message['role'] == 'assistant' %}
        {{ '[A] ' + message['content'] + eos_token }}
    {% else %}
        {{ '[' + message['role'] + '] ' + message['content'] }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
    {{ '[A] ' }}
{% endif %}
""",
    # tools, tojson (no HTML escaping, with options), reasoning aliases, tool calls, loop controls.
    "tools": """
{%- if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>
{% endif %}
{%- for m in messages %}
  {%- if m.role == 'system' %}{% continue %}{% endif %}
  {%- if loop.index0 > 8 %}{% break %}{% endif %}
  {%- if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}|{{ m.thinking }}</think>{% endif %}
  {{- '<|' + m.role + '|>' + (m.content if m.content is defined else '<no content>') }}
  {%- if m.tool_calls is defined %}{% for c in m.tool_calls %}{{ c.function | tojson(indent=2, sort_keys=true) }}{% endfor %}{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|assistant|>{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}{% endif %}
""",
    # namespace, dict(), filters, messages[0] lookups, documents
    "namespace": """
{%- set ns = namespace(n=0, users=[]) -%}
{%- for m in messages -%}{%- set ns.n = ns.n + 1 -%}{%- if m.role == 'user' -%}{%- set ns.users = ns.users + [m.content | upper] -%}{%- endif -%}{%- endfor -%}
first={{ messages[0]['role'] }} n={{ ns.n }} users={{ ns.users | join(',') }} {{ dict(a=1, b=[1, 2]) | tojson }}
{%- if documents %} docs={{ documents | map(attribute='title') | join('/') }}{% endif %}
{{ pad_token }}{{ unk_token }}{{ custom_var | default('none') }}
""",
    "date": "{{ strftime_now('%Y') }}:{{ messages | length }}",
}

CONVERSATIONS = [
    [{"role": "user", "content": "Hello <b>&amp;</b> \"quotes\" 'single' é 你好 🙂"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4", "reasoning": "two plus two"}, {"role": "user", "content": "and 3+3?"}],
    [{"role": "user", "content": "weather?"},
     {"role": "assistant", "content": None, "tool_calls": [
         {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "°C"}}}]},
     {"role": "tool", "content": "<sunny/>"}],
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'later'",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def _peer_tokenizer():
    # transformers' apply_chat_template lives on a tokenizer: a two-word one is enough for text renders.
    backend = HFTokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "<pad>": 2, "<unk>": 3}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL)


@pytest.fixture(scope="module")
def peer():
    return _peer_tokenizer()


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("gen", [True, False])
def test_render_matches_transformers(peer, name, conv, gen):
    source = TEMPLATES[name]
    messages = CONVERSATIONS[conv]
    kwargs = {"tools": TOOLS} if conv == 2 else {}
    if name == "namespace" and conv == 1:
        kwargs = {"documents": [{"title": "A", "text": "x"}, {"title": "B", "text": "y"}], "custom_var": "set"}
    if name == "tools" and conv == 1:
        kwargs = {"enable_thinking": False}
    try:
        theirs = peer.apply_chat_template(messages, chat_template=source, add_generation_prompt=gen,
                                          tokenize=False, **kwargs)
    except jinja2.TemplateError as e:
        # e.g. the "indented" template on a tool call whose null content was dropped: both must fail
        with pytest.raises(ChatTemplateError, match=type(e).__name__):
            ChatTemplate(source).render(messages, add_generation_prompt=gen, **SPECIAL, **kwargs)
        return
    ours = ChatTemplate(source).render(messages, add_generation_prompt=gen, **SPECIAL, **kwargs)
    assert ours == theirs
    assert len(ours) > 0


def test_tojson_does_not_escape_html():
    out = ChatTemplate("{{ messages[0] | tojson }}").render([{"role": "user", "content": "<a>&'é"}])
    assert out == '{"role": "user", "content": "<a>&\'é"}'


def test_caller_messages_are_not_modified():
    messages = [{"role": "assistant", "content": None, "reasoning": "r"}]
    ChatTemplate("{{ messages | tojson }}").render(messages)
    assert messages == [{"role": "assistant", "content": None, "reasoning": "r"}]


def test_dataclass_messages_and_opaque_objects():
    @dataclasses.dataclass
    class Msg:
        role: str
        content: object

    class Blob:
        pass

    out = ChatTemplate("{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}").render(
        [Msg("user", "hi"), Msg("user", Blob())])
    assert out == "user=hi;user=<Blob>;"


def test_generation_spans_match_transformers():
    source = ("{% for m in messages %}{% if m.role == 'assistant' %}A: {% generation %}{{ m.content }}"
              "{% endgeneration %}\n{% else %}U: {{ m.content }}\n{% endif %}{% endfor %}")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
                {"role": "user", "content": "more"}, {"role": "assistant", "content": "ok"}]
    text, spans = ChatTemplate(source).render_with_generation_spans(messages)
    (peer_text,), (peer_spans,) = render_jinja_template([messages], chat_template=source,
                                                        return_assistant_tokens_mask=True)
    assert text == peer_text and spans == peer_spans
    assert [text[a:b] for a, b in spans] == ["hello there", "ok"]
    # without tracking the tag is transparent
    assert ChatTemplate(source).render(messages) == text


def test_strftime_now_is_today():
    assert ChatTemplate(TEMPLATES["date"]).render([{"role": "user", "content": "x"}]) in (
        f"{datetime.now().year}:1", f"{datetime.now().year - 1}:1")


# ----- errors

def test_raise_exception_becomes_chat_template_error(peer):
    source = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user turn') }}{% endif %}"
    bad = [{"role": "assistant", "content": "x"}]
    with pytest.raises(ChatTemplateError, match="my-template.*must start with a user turn"):
        ChatTemplate(source, origin="my-template").render(bad)
    with pytest.raises(jinja2.TemplateError, match="must start with a user turn"):
        peer.apply_chat_template(bad, chat_template=source, tokenize=False)


def test_syntax_error_names_origin_and_line():
    with pytest.raises(ChatTemplateError, match=r"tokenizer_config.json.*line 2"):
        ChatTemplate("ok\n{% for m in messages %}", origin="tokenizer_config.json")


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",  # reaching Python internals
    "{% set x = [] %}{{ x.append(1) }}",  # mutating a list (immutable sandbox)
    "{% set ns = namespace() %}{% set ns._secret = 1 %}",  # underscore attributes on a namespace
    "{{ cycler.__init__.__globals__ }}",  # the classic SSTI escape
])
def test_sandbox_blocks_unsafe_templates(source):
    with pytest.raises(ChatTemplateError, match="Security"):
        ChatTemplate(source).render([{"role": "user", "content": "x"}])


def test_undefined_use_is_a_clear_error():
    with pytest.raises(ChatTemplateError, match="UndefinedError"):
        ChatTemplate("{{ messages[0].content + missing_var.attr }}").render([{"role": "user", "content": "x"}])


@pytest.mark.parametrize("messages,err", [
    ([], ValueError), ("hello", TypeError), ([["user", "hi"]], TypeError), ([{"content": "no role"}], ValueError),
])
def test_bad_messages(messages, err):
    with pytest.raises(err, match="messages|conversation"):
        ChatTemplate("x").render(messages)


def test_bad_tools():
    with pytest.raises(TypeError, match=r"tools\[0\]"):
        ChatTemplate("x").render([{"role": "user", "content": "x"}], tools=["not a schema"])


def test_select_template_like_transformers():
    templates = {"default": "D", "tool_use": "T", "rag": "R"}
    assert select_template(templates) == "D"
    assert select_template(templates, tools=[{}]) == "T"
    assert select_template(templates, name="rag") == "R"
    with pytest.raises(ChatTemplateError, match="no chat template named 'nope'"):
        select_template(templates, name="nope")
    with pytest.raises(ChatTemplateError, match="none named 'default'"):
        select_template({"a": "A", "b": "B"})


HOSTILE = {
    "string_times_2e9": '{{ "x" * 2000000000 }}',
    "nested_ranges_1e10": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "huge_power": "{{ 10 ** 10000000 }}",
    "namespace_doubling": '{% set ns = namespace(s="ab") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}'
                          "{% endfor %}{{ ns.s }}",
    "list_doubling": '{% set ns = namespace(s=["a"]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}'
                     "{% endfor %}{{ ns.s|length }}",
    "macro_doubling": '{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f("ab") }}',
    "endless_recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}",
    "output_flood": "{% for i in range(1000000) %}{{ messages[0].content }}{% endfor %}",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_templates_stop_within_their_budget(name):
    """Each of these runs out of memory or time unbounded (2 GB strings, 10^10 iterations, 2^40
    doubling); under the render budget each is one ChatTemplateError naming the template."""
    t = ChatTemplate(HOSTILE[name], origin=f"hostile/{name}")
    with pytest.raises(ChatTemplateError, match=f"hostile/{name}"):
        t.render([{"role": "user", "content": "hello " * 20}])


def test_the_render_budget_also_bounds_time():
    from r1.chat.template_budget import RenderBudget

    slow = "{% for i in range(900000) %}{% if messages[0].content %}{% endif %}{% endfor %}"
    assert ChatTemplate(slow).render([{"role": "user", "content": "x"}]) == ""  # within the default budget
    with pytest.raises(ChatTemplateError, match="took over"):
        ChatTemplate(slow, budget=RenderBudget(max_seconds=0.01)).render([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="max_chars"):
        RenderBudget(max_chars=0)
