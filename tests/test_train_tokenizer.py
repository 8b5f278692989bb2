"""The BPE tokenizer trained for from-scratch models: R1 special tokens, <think> kept visible, loadable by
r1 and by transformers, R1 chat template."""
from __future__ import annotations

import r1
from r1.chat.r1_template import BOS, EOS, GENERATION_PROMPT, SPECIAL_TOKENS, THINK_CLOSE, THINK_OPEN
from r1.chat.reasoning import split_reasoning
from train_common import cli, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)


def test_special_tokens_and_think_tokens(tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    assert tok.vocab_size == 384
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.bos_token == BOS and tok.bos_token_id == 0 and tok.eos_token == EOS and tok.eos_token_id == 1
    assert tok.eos_token_ids == [1]
    specials = tok.all_special_ids
    assert all(tok.token_to_id(t) in specials for t in SPECIAL_TOKENS)
    think = [tok.token_to_id(THINK_OPEN), tok.token_to_id(THINK_CLOSE)]
    assert None not in think and not set(think) & specials

    text = f"{BOS}<｜User｜>12+30?<｜Assistant｜>{THINK_OPEN}\n12+30=42\n{THINK_CLOSE}\n\n42{EOS}"
    ids = tok.encode(text)
    assert ids.count(think[0]) == 1 and ids.count(think[1]) == 1  # each a single token
    shown = tok.decode(ids, skip_special_tokens=True)
    assert shown == "12+30?<think>\n12+30=42\n</think>\n\n42"  # control tokens gone, reasoning kept
    assert split_reasoning(shown.split("?", 1)[1], think_in_prompt=False) == ("12+30=42", "42")
    # Digits are single tokens: numbers never merge into multi-digit pieces.
    assert tok.encode("12345") == [tok.token_to_id(d) for d in "12345"]


def test_chat_template_and_transformers_agree(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = r1.load_tokenizer(tokenizer_dir)
    msgs = [{"role": "user", "content": "What is 2 + 3?"}]
    prompt = tok.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt == f"{BOS}<｜User｜>What is 2 + 3?{GENERATION_PROMPT}"
    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert hf.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == prompt
    sample = prompt + "2 + 3 = 5\n</think>\n\nThe answer is \\boxed{5}." + EOS
    assert hf(sample, add_special_tokens=False)["input_ids"] == tok.encode(sample)
    assert hf.decode(tok.encode(sample), skip_special_tokens=True) == tok.decode(tok.encode(sample))


def test_cli_trains_a_tokenizer(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. " * 200 + "12 + 34 = 46\n" * 50)
    rc, out, err = cli(["train", "tokenizer", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "300"], capsys)
    assert rc == 0, err
    tok = r1.load_tokenizer(tmp_path / "tok")
    # vocab_size is a ceiling: a small corpus may not offer that many merges.
    assert 256 < tok.vocab_size <= 300 and tok.decode(tok.encode("the cat sat")) == "the cat sat"
