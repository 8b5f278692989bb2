"""The DeepSeek-R1 chat format: its special-token strings and our Jinja text for its chat template.

The token strings use FULLWIDTH VERTICAL LINE (U+FF5C `｜`) and LOWER ONE EIGHTH BLOCK (U+2581 `▁`),
not `|` and `_`; retyping them by hand is the classic way to get a prompt that tokenizes into junk,
so every other module imports them from here.

The template renders the same strings as the `chat_template` in DeepSeek-R1's published
`tokenizer_config.json` (checked in tests/test_chat_r1_template.py against a copy of it), except
where that template is broken, each noted below:

* it never resets its "first tool call" and "first tool output" flags, so a second tool-calling
  turn loses `<｜Assistant｜><｜tool▁calls▁begin｜>` and a second round of tool outputs loses
  `<｜tool▁outputs▁begin｜>`; we reset them per message, as DeepSeek-V3-0324/R1-0528 do;
* an assistant tool call right after tool outputs never closes them; we emit
  `<｜tool▁outputs▁end｜>` first (R1-0528 does the same);
* it crashes on a tool-calling message whose `content` is null (transformers drops null keys, so
  every OpenAI-style tool call hits this); we treat missing content as "";
* reasoning is stripped from plain assistant turns only; we strip it from every assistant turn;
* an empty `tool_calls` list drops the whole turn; we render it as a plain answer;
* it silently skips unknown roles; we raise, naming the role;
* it ignores `tools`; when tools are given we add R1-0528's tool description to the system
  prompt, so a request without tools renders exactly as R1 does.
"""
from __future__ import annotations

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
TOOL_CALLS_END = "<｜tool▁calls▁end｜>"
TOOL_CALL_BEGIN = "<｜tool▁call▁begin｜>"
TOOL_CALL_END = "<｜tool▁call▁end｜>"
TOOL_SEP = "<｜tool▁sep｜>"
TOOL_OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>"
TOOL_OUTPUTS_END = "<｜tool▁outputs▁end｜>"
TOOL_OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
TOOL_OUTPUT_END = "<｜tool▁output▁end｜>"

# What the generation prompt ends with: R1 is made to start every answer inside a think block.
GENERATION_PROMPT = ASSISTANT + THINK_OPEN + "\n"

# Every control string of the format, e.g. to add them as tokens to a freshly trained tokenizer.
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS, EOS, PAD, USER, ASSISTANT, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_CALL_BEGIN, TOOL_CALL_END,
    TOOL_SEP, TOOL_OUTPUTS_BEGIN, TOOL_OUTPUTS_END, TOOL_OUTPUT_BEGIN, TOOL_OUTPUT_END,
)
# <think> and </think> are ordinary (non-special) added tokens in R1's tokenizer, so decoding with
# skip_special_tokens=True keeps them in the text, which is what the reasoning parser reads.
THINK_TOKENS: tuple[str, ...] = (THINK_OPEN, THINK_CLOSE)

# R1-0528's instruction that precedes the tool schemas in the system prompt.
_TOOLS_PREAMBLE = (
    "You are a helpful assistant with tool calling capabilities. When a tool call is needed, you MUST "
    "use the following format to issue the call:\n"
    f"{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}FUNCTION_NAME\n"
    '```json\n{"param1": "value1", "param2": "value2"}\n```'
    f"{TOOL_CALL_END}{TOOL_CALLS_END}\n\n"
    "Make sure the JSON is valid.## Tools\n\n### Function\n\nYou have the following functions available:\n\n"
)


def _jinja_str(s: str) -> str:
    # A Jinja string literal: the template text below stays readable while the token strings come
    # from the constants above, so the two can never drift apart.
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


# Rendered with trim_blocks/lstrip_blocks like every HF template; `{%-`/`-%}` strip the layout
# whitespace, so only the quoted strings reach the output.
_TEMPLATE_BODY = (
    """
{%- macro text(value) -%}
  {#- OpenAI-style content may be a list of parts; the model only ever sees the text parts. -#}
  {%- if value is none or value is undefined -%}
  {%- elif value is string -%}{{ value }}
  {%- else -%}{%- for part in value -%}{%- if part.type == 'text' -%}{{ part.text }}{%- endif -%}{%- endfor -%}
  {%- endif -%}
{%- endmacro -%}
{%- macro answer(value) -%}
  {#- Earlier turns keep only what follows the last </think>: the model never sees old reasoning. -#}
  {%- set t = text(value) -%}
  {%- if '</think>' in t -%}{{ t.split('</think>')[-1] }}{%- else -%}{{ t }}{%- endif -%}
{%- endmacro -%}
{%- macro call(tool) -%}
  {%- set fn = tool.function if tool.function is defined else tool -%}
  {%- set args = fn.arguments if fn.arguments is defined else {} -%}
  {%- if args is not string -%}{%- set args = args | tojson -%}{%- endif -%}
  {{- TOOL_CALL_BEGIN + (tool.type if tool.type is defined else 'function') + TOOL_SEP + fn.name
      + '\\n```json\\n' + args + '\\n```' + TOOL_CALL_END -}}
{%- endmacro -%}
{%- set ns = namespace(system='', first_system=true, in_outputs=false) -%}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}
    {%- if ns.first_system -%}{%- set ns.system = text(message.content) -%}{%- set ns.first_system = false -%}
    {%- else -%}{%- set ns.system = ns.system + '\\n\\n' + text(message.content) -%}{%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if tools -%}
  {%- set tool_ns = namespace(text=TOOLS_PREAMBLE) -%}
  {%- for tool in tools -%}{%- set tool_ns.text = tool_ns.text + '\\n```json\\n' + (tool | tojson) + '\\n```\\n' -%}{%- endfor -%}
  {%- if ns.system -%}{%- set ns.system = ns.system + '\\n\\n' + tool_ns.text -%}{%- else -%}{%- set ns.system = tool_ns.text -%}{%- endif -%}
{%- endif -%}
{{- bos_token if bos_token is defined and bos_token else '' -}}
{{- ns.system -}}
{%- for message in messages -%}
  {%- if message.role == 'user' -%}
    {%- set ns.in_outputs = false -%}
    {{- USER + text(message.content) -}}
  {%- elif message.role == 'assistant' -%}
    {#- After tool outputs the answer follows <｜tool▁outputs▁end｜> directly, with no <｜Assistant｜>. -#}
    {{- TOOL_OUTPUTS_END if ns.in_outputs else ASSISTANT -}}
    {%- set ns.in_outputs = false -%}
    {{- answer(message.content) -}}
    {%- if message.tool_calls -%}
      {{- TOOL_CALLS_BEGIN -}}
      {%- for tool in message.tool_calls -%}{{- '\\n' if not loop.first else '' -}}{{- call(tool) -}}{%- endfor -%}
      {{- TOOL_CALLS_END -}}
    {%- endif -%}
    {{- EOS -}}
  {%- elif message.role == 'tool' -%}
    {{- TOOL_OUTPUT_BEGIN if ns.in_outputs else TOOL_OUTPUTS_BEGIN + TOOL_OUTPUT_BEGIN -}}
    {{- text(message.content) + TOOL_OUTPUT_END -}}
    {%- set ns.in_outputs = true -%}
  {%- elif message.role != 'system' -%}
    {{- raise_exception('the DeepSeek-R1 chat template has no role ' + message.role | string
        + "; use system, user, assistant or tool") -}}
  {%- endif -%}
{%- endfor -%}
{%- if ns.in_outputs -%}{{- TOOL_OUTPUTS_END -}}{%- endif -%}
{#- After tool outputs the model continues its own turn, so no new <｜Assistant｜><think> opens. -#}
{%- if add_generation_prompt and not ns.in_outputs -%}{{- GENERATION_PROMPT -}}{%- endif -%}
"""
)

# The token strings are bound into the template text as Jinja `set` statements, so the template is
# one self-contained string (it can be saved into a tokenizer_config.json and read by transformers).
_CONSTANTS = (
    ("USER", USER), ("ASSISTANT", ASSISTANT), ("EOS", EOS), ("GENERATION_PROMPT", GENERATION_PROMPT),
    ("TOOL_CALLS_BEGIN", TOOL_CALLS_BEGIN), ("TOOL_CALLS_END", TOOL_CALLS_END),
    ("TOOL_CALL_BEGIN", TOOL_CALL_BEGIN), ("TOOL_CALL_END", TOOL_CALL_END), ("TOOL_SEP", TOOL_SEP),
    ("TOOL_OUTPUTS_BEGIN", TOOL_OUTPUTS_BEGIN), ("TOOL_OUTPUTS_END", TOOL_OUTPUTS_END),
    ("TOOL_OUTPUT_BEGIN", TOOL_OUTPUT_BEGIN), ("TOOL_OUTPUT_END", TOOL_OUTPUT_END),
    ("TOOLS_PREAMBLE", _TOOLS_PREAMBLE),
)
R1_CHAT_TEMPLATE = (
    "".join(f"{{%- set {k} = {_jinja_str(v)} -%}}\n" for k, v in _CONSTANTS) + _TEMPLATE_BODY.strip() + "\n"
)
