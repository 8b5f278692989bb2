"""load_tokenizer against transformers.AutoTokenizer: tiny tokenizers built here, and SmolLM2's GGUF."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from r1.chat import ChatTemplateError, Tokenizer, TokenizerLoadError, load_tokenizer

transformers = pytest.importorskip("transformers")

CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "Привет мир, 你好世界 🙂🙃 café naïve — déjà vu",
    "def f(x):\n    return x * 2  # comment\n",
    "user: what is 12 + 30? assistant: it is 42.",
] * 5
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\nBe helpful.<|im_end|>\n' }}"
          "{% endif %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TOOL_TEMPLATE = ("{{ bos_token }}{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
                 "{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}{% endfor %}")
TEXTS = [
    "Hello world!", "  two leading spaces and trailing  ", "Привет мир, 你好 🙂 café\n\n\ttab",
    "<|im_start|>user\nhi<|im_end|>", "<s>raw bos</s> inside text", "x = f(12345) # 42", "",
]
CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "You are a fox."}, {"role": "user", "content": "Jump over 🙂 the dog?"}],
    [{"role": "user", "content": "12 + 30?"}, {"role": "assistant", "content": "42."},
     {"role": "user", "content": "Привет"}],
]


def _train(pre, dec, normalizer=None) -> HFTokenizer:
    tok = HFTokenizer(models.BPE(unk_token="<unk>" if normalizer else None))
    tok.pre_tokenizer = pre
    tok.decoder = dec
    if normalizer:
        tok.normalizer = normalizer
    alphabet = pre_tokenizers.ByteLevel.alphabet() if normalizer is None else []
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>", "<pad>", "<unk>"], initial_alphabet=alphabet))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    return tok


def byte_level() -> HFTokenizer:
    return _train(pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel())


@pytest.fixture(scope="module")
def saved_by_transformers(tmp_path_factory) -> Path:
    """A tiny byte-level BPE saved the way transformers saves any tokenizer today."""
    path = tmp_path_factory.mktemp("hf_saved")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_level(), bos_token="<s>", eos_token="</s>",
                                              pad_token="<pad>", chat_template=CHATML)
    hf.save_pretrained(path)
    assert (path / "chat_template.jinja").is_file()
    return path


@pytest.fixture(scope="module")
def hand_written(tmp_path_factory) -> Path:
    """tokenizer_config.json with named templates and AddedToken dicts, plus generation_config.json."""
    path = tmp_path_factory.mktemp("hand_written")
    byte_level().save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {},
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False},
        "eos_token": "</s>", "pad_token": None, "unk_token": "<unk>",
        "chat_template": [{"name": "default", "template": CHATML}, {"name": "tool_use", "template": TOOL_TEMPLATE}],
    }))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 5]}))
    return path


def _peer(path: Path):
    return transformers.AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("folder", ["saved_by_transformers", "hand_written"])
def test_folder_matches_transformers(folder, request):
    path = request.getfixturevalue(folder)
    ours, peer = load_tokenizer(path), _peer(path)
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (
        peer.bos_token_id, peer.eos_token_id, peer.pad_token_id)
    assert ours.vocab_size == len(peer)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == peer.encode(text, add_special_tokens=False), text
        assert ours.encode(text, add_special_tokens=True) == peer.encode(text), text
        assert ours.decode(ids) == peer.decode(ids, skip_special_tokens=True)
        assert ours.decode(ids, skip_special_tokens=False) == peer.decode(ids)
    for messages in CONVERSATIONS:
        for gen in (True, False):
            text = ours.apply_chat_template(messages, add_generation_prompt=gen)
            assert text == peer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            assert ours.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True) == \
                peer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=False)


def test_named_templates_and_stop_ids(hand_written):
    ours, peer = load_tokenizer(hand_written), _peer(hand_written)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    messages = CONVERSATIONS[1]
    with_tools = ours.apply_chat_template(messages, tools=tools)
    assert with_tools.startswith("<s>TOOLS [{")  # the `tool_use` template was picked, as transformers does
    assert with_tools == peer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    assert ours.apply_chat_template(messages, chat_template="tool_use") == peer.apply_chat_template(
        messages, chat_template="tool_use", add_generation_prompt=True, tokenize=False)
    # a full template text works as well as a name
    assert ours.apply_chat_template(messages, chat_template="{{ messages | length }}") == "2"
    # eos from the tokenizer, generation_config's list, and the template's end-of-turn token
    im_end = ours.token_to_id("<|im_end|>")
    assert ours.eos_token_ids == [ours.eos_token_id, 5, im_end]
    assert ours.pad_token_id is None and ours.unk_token == "<unk>"


def test_legacy_special_tokens_map(tmp_path):
    # Without added_tokens_decoder in the config, transformers lets special_tokens_map.json win.
    byte_level().save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<s>", "chat_template": CHATML}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({
        "eos_token": {"content": "<|im_end|>", "lstrip": False}, "pad_token": "<pad>", "bos_token": "<s>"}))
    ours, peer = load_tokenizer(tmp_path), _peer(tmp_path)
    assert (ours.eos_token, ours.pad_token, ours.bos_token) == (peer.eos_token, peer.pad_token, peer.bos_token)
    assert ours.eos_token == "<|im_end|>"


def test_missing_special_token_is_added_like_transformers(tmp_path):
    byte_level().save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "sep_token": "<SEP>"}))
    ours, peer = load_tokenizer(tmp_path), _peer(tmp_path)
    assert ours.token_to_id("<SEP>") == peer.convert_tokens_to_ids("<SEP>")
    assert ours.encode("a<SEP>b") == peer.encode("a<SEP>b", add_special_tokens=False)
    assert ours.vocab_size == len(peer)


# ----- streaming detokenization

def _check_stream(tok: Tokenizer, ids: list[int], prompt: list[int] | None = None) -> None:
    d = tok.detokenizer(prompt_ids=prompt)
    deltas = [d.step(i) for i in ids] + [d.finish()]
    full = tok.decode(ids)
    if prompt:
        full = tok.decode(prompt + ids)[len(tok.decode(prompt)):]
    assert "".join(deltas) == full, (ids, deltas)
    if "\ufffd" not in full:
        assert not any("\ufffd" in x for x in deltas)  # never half a character
    assert d.generated_ids == ids


def test_detokenizer_byte_level():
    tok = load_tokenizer_from(byte_level())
    for text in TEXTS + CORPUS[:4] + ["🙂🙃🙂 multi-byte only ✓✓ 你好你好"]:
        _check_stream(tok, tok.encode(text))
    rng = random.Random(0)
    for _ in range(50):  # arbitrary ids, including byte soup that is not valid UTF-8
        _check_stream(tok, [rng.randrange(tok.vocab_size) for _ in range(rng.randint(1, 30))])
    # several ids at a time
    d = tok.detokenizer()
    ids = tok.encode("你好 🙂 world")
    assert "".join(d.step(ids[i:i + 3]) for i in range(0, len(ids), 3)) + d.finish() == "你好 🙂 world"


def test_detokenizer_sentencepiece_style_keeps_spaces():
    # Metaspace decoders drop the first token's leading space: token-by-token decoding loses every space.
    tok = load_tokenizer_from(_train(pre_tokenizers.Metaspace(), decoders.Metaspace(), normalizers.NFC()))
    ids = tok.encode("Hello world, the quick brown fox")
    assert "".join(tok.decode([i]) for i in ids) != tok.decode(ids)  # the trap
    _check_stream(tok, ids)
    prompt = tok.encode("user: what is 12")
    gen = tok.encode(" + 30")
    _check_stream(tok, gen, prompt=prompt)
    d = tok.detokenizer(prompt_ids=prompt)
    assert "".join(d.step(i) for i in gen) + d.finish() == " + 30"


def load_tokenizer_from(backend: HFTokenizer) -> Tokenizer:
    return Tokenizer(backend, special_tokens={"bos_token": "<s>", "eos_token": "</s>"})


# ----- errors name the culprit

def test_errors(tmp_path, hand_written):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerLoadError, match="no tokenizer.json"):
        load_tokenizer(empty)
    (empty / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="tokenizer.json"):
        load_tokenizer(empty)

    bad = tmp_path / "bad_config"
    bad.mkdir()
    byte_level().save(str(bad / "tokenizer.json"))
    (bad / "tokenizer_config.json").write_text('{"eos_token": "</s>",\n "chat_template": 3,}')
    with pytest.raises(TokenizerLoadError, match=r"tokenizer_config.json: not valid JSON \(line 2"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text('{"chat_template": 3}')
    with pytest.raises(TokenizerLoadError, match="tokenizer_config.json: field 'chat_template'"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text('{"chat_template": [{"name": "default"}]}')
    with pytest.raises(TokenizerLoadError, match=r"chat_template\[0\]"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text('{"eos_token": 7}')
    with pytest.raises(TokenizerLoadError, match="field 'eos_token'"):
        load_tokenizer(bad)
    (bad / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    (bad / "generation_config.json").write_text('{"eos_token_id": "two"}')
    with pytest.raises(TokenizerLoadError, match="generation_config.json: field 'eos_token_id'"):
        load_tokenizer(bad)
    (bad / "generation_config.json").write_text('{"eos_token_id": 100000}')
    with pytest.raises(TokenizerLoadError, match="100000 is outside the vocabulary"):
        load_tokenizer(bad)
    (bad / "generation_config.json").unlink()
    (bad / "chat_template.jinja").write_text("{% if %}")
    tok = load_tokenizer(bad)
    with pytest.raises(ChatTemplateError, match="chat template 'default': Jinja syntax error on line 1"):
        tok.apply_chat_template([{"role": "user", "content": "x"}])
    (bad / "chat_template.jinja").unlink()
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        load_tokenizer(bad).apply_chat_template([{"role": "user", "content": "x"}])

    tok = load_tokenizer(hand_written)
    with pytest.raises(ValueError, match="token id 99999 is outside the vocabulary"):
        tok.decode([1, 99999])
    with pytest.raises(TypeError, match="encode"):
        tok.encode(["not", "a", "string"])  # type: ignore[arg-type]
    with pytest.raises(TokenizerLoadError, match="not a tokenizer"):
        load_tokenizer(hand_written / "tokenizer_config.json")
    with pytest.raises(TokenizerLoadError, match="'<nope>' is not in the vocabulary"):
        Tokenizer(byte_level(), special_tokens={"eos_token": "<nope>"})


# ----- the one real model: SmolLM2-135M-Instruct's GGUF

@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    ours = load_tokenizer(smollm2_gguf)
    peer = transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    return ours, peer


SMOL_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],  # the template adds its default system
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hello! 🦜"}],
    [{"role": "user", "content": "Count: 1 2 3"}, {"role": "assistant", "content": "4 5 6"},
     {"role": "user", "content": "Now in Chinese: 四 五 六?"}],
    [{"role": "system", "content": "Terse."}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
]


def test_smollm2_gguf_chat_template_matches_transformers(smollm2):
    ours, peer = smollm2
    assert ours.chat_template == peer.chat_template and "<|im_start|>" in ours.chat_template
    for messages in SMOL_CONVERSATIONS:
        for gen in (True, False):
            text = ours.apply_chat_template(messages, add_generation_prompt=gen)
            assert text == peer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            ids = ours.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
            assert ids == peer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True,
                                                   return_dict=False)
            assert ours.decode(ids, skip_special_tokens=False) == text


def test_smollm2_gguf_tokens_match_transformers(smollm2):
    ours, peer = smollm2
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, ours.unk_token_id) == (
        peer.bos_token_id, peer.eos_token_id, peer.pad_token_id, peer.unk_token_id)
    assert ours.vocab_size == len(peer) == 49152
    assert ours.eos_token_ids == [peer.convert_tokens_to_ids("<|im_end|>")]
    for text in TEXTS + CORPUS[:4] + ["don't I'll we're 3.14159 1,000,000"]:
        ids = ours.encode(text)
        assert ids == peer.encode(text, add_special_tokens=False), text
        assert ours.decode(ids) == peer.decode(ids, skip_special_tokens=True)
        _check_stream(ours, ids)


def test_tokenizer_pickles_after_rendering_a_template():
    """The GRPO rollout worker receives the tokenizer by pickle; a rendered template (a compiled
    jinja2 function in the cache) must not stop that."""
    import pickle

    from r1.train.tokenizer_train import train_bpe

    tok = train_bpe(["hello world, a few words to learn from"] * 4, vocab_size=300)
    tok.chat_templates = {"default": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi"
    again = pickle.loads(pickle.dumps(tok))
    assert again.apply_chat_template([{"role": "user", "content": "yo"}]) == "yo"
    assert again.encode("hello world") == tok.encode("hello world")
