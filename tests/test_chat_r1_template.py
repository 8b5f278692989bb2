"""Our DeepSeek-R1 chat template against the published one (tests/fixtures/README.md says where it is from)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import AddedToken, models, pre_tokenizers, decoders, trainers
from tokenizers import Tokenizer as HFTokenizer

from r1.chat import ChatTemplateError, load_tokenizer, split_reasoning, prompt_opens_reasoning
from r1.chat.r1_template import (
    ASSISTANT, BOS, EOS, GENERATION_PROMPT, R1_CHAT_TEMPLATE, SPECIAL_TOKENS, THINK_TOKENS, TOOL_CALL_BEGIN,
    TOOL_CALL_END, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_OUTPUT_BEGIN, TOOL_OUTPUT_END, TOOL_OUTPUTS_BEGIN,
    TOOL_OUTPUTS_END, TOOL_SEP, USER,
)
from r1.chat.template import ChatTemplate

PUBLISHED = (Path(__file__).parent / "fixtures" / "deepseek_r1_chat_template.jinja").read_text(encoding="utf-8")

WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
TIME_CALL = {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}

# Conversations on which the published template is well defined (see r1_template.py for where it is not).
CONVERSATIONS = {
    "one user turn": [{"role": "user", "content": "What is 2+2?"}],
    "system prompts": [{"role": "system", "content": "You are terse."}, {"role": "system", "content": "Use SI units."},
                       {"role": "user", "content": "Speed of light?"}],
    "multi-turn with reasoning": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nEasy: 2+2=4.\n</think>\n\nIt is 4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "Thanks 🙂"},
    ],
    "tool round trip": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL, TIME_CALL]},
        {"role": "tool", "content": '{"sky": "sunny"}'},
        {"role": "tool", "content": '{"time": "12:00"}'},
        {"role": "assistant", "content": "Sunny, and it is noon."},
        {"role": "user", "content": "Great."},
    ],
    "ends in tool output": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "content": "sunny"},
    ],
}


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("gen", [True, False])
def test_matches_published_template(name, gen):
    messages = CONVERSATIONS[name]
    published = ChatTemplate(PUBLISHED, "published").render(messages, add_generation_prompt=gen, bos_token=BOS)
    ours = ChatTemplate(R1_CHAT_TEMPLATE, "ours").render(messages, add_generation_prompt=gen, bos_token=BOS)
    assert ours == published
    assert ours.startswith(BOS)


def test_transformers_renders_both_the_same():
    # The template text is portable: transformers renders it to the same string as the published one.
    transformers = pytest.importorskip("transformers")
    backend = HFTokenizer(models.WordLevel({BOS: 0, EOS: 1, "<unk>": 2}, unk_token="<unk>"))
    peer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS)
    for messages in CONVERSATIONS.values():
        theirs = peer.apply_chat_template(messages, chat_template=PUBLISHED, add_generation_prompt=True, tokenize=False)
        ours = peer.apply_chat_template(messages, chat_template=R1_CHAT_TEMPLATE, add_generation_prompt=True,
                                        tokenize=False)
        assert ours == theirs


def render(messages, gen=True, **kw):
    return ChatTemplate(R1_CHAT_TEMPLATE).render(messages, add_generation_prompt=gen, bos_token=BOS, **kw)


def test_exact_strings():
    assert render([{"role": "user", "content": "Hi"}]) == f"{BOS}{USER}Hi{ASSISTANT}<think>\n"
    assert render([{"role": "user", "content": "Hi"}], gen=False) == f"{BOS}{USER}Hi"
    assert GENERATION_PROMPT == "<｜Assistant｜><think>\n"
    # the fullwidth bars and the lower-block spaces, not ASCII look-alikes
    assert BOS == "<\uff5cbegin\u2581of\u2581sentence\uff5c>" and USER == "<\uff5cUser\uff5c>"
    text = render(CONVERSATIONS["tool round trip"], gen=False)
    assert text == (
        f"{BOS}You can call tools.{USER}Weather and time in Paris?"
        f"{ASSISTANT}{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}get_weather\n```json\n"
        '{"city": "Paris"}\n```'
        f"{TOOL_CALL_END}\n{TOOL_CALL_BEGIN}function{TOOL_SEP}get_time\n```json\n{{}}\n```{TOOL_CALL_END}"
        f"{TOOL_CALLS_END}{EOS}"
        f"{TOOL_OUTPUTS_BEGIN}{TOOL_OUTPUT_BEGIN}"
        '{"sky": "sunny"}'
        f"{TOOL_OUTPUT_END}{TOOL_OUTPUT_BEGIN}"
        '{"time": "12:00"}'
        f"{TOOL_OUTPUT_END}{TOOL_OUTPUTS_END}Sunny, and it is noon.{EOS}{USER}Great."
    )


def test_generation_prompt_and_reasoning_round_trip():
    prompt = render(CONVERSATIONS["multi-turn with reasoning"])
    assert prompt.endswith("<｜Assistant｜><think>\n")
    assert "Easy" not in prompt and "<think>\n" not in prompt[:-len(GENERATION_PROMPT)]
    # only what follows </think> is kept, blank lines included (as the published template does)
    assert f"{ASSISTANT}\n\nIt is 4.{EOS}{USER}And 3+3?{ASSISTANT}6{EOS}" in prompt
    assert prompt_opens_reasoning(prompt)
    # a completion for this prompt splits into reasoning and answer
    assert split_reasoning("Add them.\n</think>\n\n6+... it is 7.", prompt_opens_reasoning(prompt)) == (
        "Add them.", "6+... it is 7.")


def test_no_generation_prompt_after_tool_outputs():
    # R1 continues its own turn after tool outputs: the prompt ends with the outputs, no <think> opens
    prompt = render(CONVERSATIONS["ends in tool output"])
    assert prompt.endswith(TOOL_OUTPUTS_END)
    assert not prompt_opens_reasoning(prompt)


# ----- where we deliberately differ from the published template (its bugs, see r1_template.py)

def test_second_tool_turn_is_complete():
    messages = [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "content": "r1"}, {"role": "assistant", "content": "", "tool_calls": [TIME_CALL]},
        {"role": "tool", "content": "r2"}, {"role": "assistant", "content": "done"},
    ]
    text = render(messages, gen=False)
    assert text.count(TOOL_CALLS_BEGIN) == 2 and text.count(TOOL_OUTPUTS_BEGIN) == 2
    assert text.count(TOOL_OUTPUTS_END) == 2
    # the second call follows the closed outputs of the first round
    assert f"r1{TOOL_OUTPUT_END}{TOOL_OUTPUTS_END}{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}" in text


def test_reasoning_stripped_from_tool_calling_turns_and_dict_arguments():
    call = {"type": "function", "function": {"name": "f", "arguments": {"x": "é<"}}}
    text = render([{"role": "user", "content": "q"},
                   {"role": "assistant", "content": "<think>secret</think>Calling.", "tool_calls": [call]}], gen=False)
    assert "secret" not in text
    assert f"{ASSISTANT}Calling.{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}f\n```json\n" in text
    assert '{"x": "é<"}' in text  # dict arguments become JSON, unescaped


def test_tools_go_into_the_system_prompt():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with_tools = render([{"role": "system", "content": "Sys."}, {"role": "user", "content": "q"}], tools=tools)
    assert with_tools.startswith(f"{BOS}Sys.\n\nYou are a helpful assistant with tool calling capabilities.")
    assert '\n```json\n{"type": "function", "function": {"name": "get_weather"' in with_tools
    assert with_tools.endswith(f"{USER}q{GENERATION_PROMPT}")


def test_content_parts_and_unknown_role():
    parts = [{"type": "text", "text": "Hello "}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "there"}]
    assert render([{"role": "user", "content": parts}], gen=False) == f"{BOS}{USER}Hello there"
    with pytest.raises(ChatTemplateError, match="no role developer"):
        render([{"role": "developer", "content": "x"}])


# ----- the template on a DeepSeek-family tokenizer folder

def _r1_folder(path: Path) -> Path:
    corpus = ["What is 2+2? Let me think. The answer is 4.", "Weather in Paris is sunny at noon.",
              '{"city": "Paris"} ```json get_weather function'] * 4
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # as in R1's tokenizer: <think> and </think> are added tokens, but not special ones
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    path.mkdir()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": BOS, "eos_token": EOS,
        "pad_token": "<｜▁pad▁｜>", "add_bos_token": True}))
    (path / "config.json").write_text(json.dumps({"model_type": "deepseek_v3", "eos_token_id": 1}))
    return path


def test_deepseek_folder_without_template_gets_r1(tmp_path):
    tok = load_tokenizer(_r1_folder(tmp_path / "r1"))
    assert tok.chat_template == R1_CHAT_TEMPLATE
    assert tok.eos_token_ids == [tok.token_to_id(EOS)]
    messages = CONVERSATIONS["tool round trip"]
    ids = tok.apply_chat_template(messages, tokenize=True)
    text = tok.apply_chat_template(messages)
    for t in (BOS, USER, ASSISTANT, EOS, TOOL_CALLS_BEGIN, TOOL_SEP, TOOL_OUTPUTS_END):
        assert ids.count(tok.token_to_id(t)) == text.count(t) > 0  # every control string is one token
    assert ids[-2:] == tok.encode("<｜Assistant｜><think>\n")[-2:]
    assert tok.token_to_id("<think>") in ids
    # special tokens vanish from a decode, <think> (not special) stays for the reasoning parser
    decoded = tok.decode(tok.encode("<｜Assistant｜><think>\nhmm</think>\n\n4<｜end▁of▁sentence｜>"))
    assert decoded == "<think>\nhmm</think>\n\n4"

    transformers = pytest.importorskip("transformers")
    peer = transformers.AutoTokenizer.from_pretrained(tmp_path / "r1")
    assert ids == peer.apply_chat_template(messages, chat_template=R1_CHAT_TEMPLATE, add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
