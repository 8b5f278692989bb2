"""A byte-level BPE tokenizer trained with HF `tokenizers` on a training corpus, carrying the
DeepSeek-R1 special tokens and chat template, for models trained from scratch.

Ids 0.. are the R1 control tokens in `r1.chat.r1_template.SPECIAL_TOKENS` order (so BOS = 0 and
EOS = 1, as in DeepSeek-V3's tokenizer), marked special: decode(skip_special_tokens=True) drops
them. `<think>` and `</think>` are added tokens that are NOT special, as in R1's tokenizer, so
decoded text keeps them for the reasoning parser. Digits are split one per token (small models
learn arithmetic far better on single digits than on the merges a corpus happens to favour).

Saved as tokenizer.json + tokenizer_config.json (bos/eos/pad, the R1 chat template), which
`r1.load_tokenizer(folder)` and `transformers.AutoTokenizer` both read.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

from r1.chat.r1_template import BOS, EOS, PAD, R1_CHAT_TEMPLATE, SPECIAL_TOKENS, THINK_TOKENS

DESCRIPTION = "train a byte-level BPE tokenizer with the R1 special tokens and chat template"

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def train_bpe(texts: Iterable[str], vocab_size: int = 512, min_frequency: int = 2, split_digits: bool = True):
    """Train a byte-level BPE on `texts`; returns an `r1.chat.Tokenizer` (vocab_size counts the
    special and think tokens too)."""
    from r1.chat.tokenizer import Tokenizer

    n_fixed = len(SPECIAL_TOKENS) + len(THINK_TOKENS)
    if vocab_size < 256 + n_fixed:
        raise ValueError(f"vocab_size={vocab_size} cannot hold the 256 byte tokens and {n_fixed} R1 tokens; "
                         f"use at least {256 + n_fixed}")
    tok = HFTokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(THINK_TOKENS), min_frequency=min_frequency,
                                  special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return Tokenizer(tok, special_tokens=tokenizer_special_tokens(), chat_template=R1_CHAT_TEMPLATE,
                     origin="trained BPE")


def tokenizer_special_tokens() -> dict[str, str]:
    return {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}


def tokenizer_files(tokenizer) -> dict[str, str]:
    """The files that make a model folder self-contained for `r1.load_tokenizer` / the engine."""
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **tokenizer.special_tokens,
        "add_bos_token": False,  # the chat template writes BOS itself
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 20,
        "chat_template": tokenizer.chat_template,
    }
    return {"tokenizer.json": tokenizer.backend.to_str(), "tokenizer_config.json": json.dumps(cfg, indent=2)}


def tokenizer_files_from_dir(folder: str | Path) -> dict[str, str]:
    """The tokenizer files of an existing model folder, to copy into a fine-tuned model's checkpoints."""
    folder = Path(folder)
    return {name: (folder / name).read_text(encoding="utf-8") for name in TOKENIZER_FILES if (folder / name).is_file()}


def save_tokenizer(tokenizer, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tokenizer_files(tokenizer).items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(folder / name)
    return folder


# ---------------------------------------------------------------- `r1 train tokenizer`
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", help=".txt / .jsonl files (field 'text'); none = the generated task corpus")
    p.add_argument("--out", "-o", required=True, help="folder to write tokenizer.json + tokenizer_config.json into")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--min-frequency", type=int, default=2)
    p.add_argument("--tasks", default="arithmetic,countdown,equations,letters,sorting",
                   help="task families for the generated corpus when no inputs are given")
    p.add_argument("--n-per-task", type=int, default=2000)
    p.add_argument("--no-split-digits", dest="split_digits", action="store_false")


def run(args: argparse.Namespace) -> int:
    from r1.tasks.datasets import pretraining_text
    from r1.train.data import DataError, read_texts

    # On the command line every input is a file, whatever its suffix (read_texts would take a
    # string without .txt/.jsonl for the text itself: README.md became a 9-character corpus).
    missing = [p for p in args.inputs if not Path(p).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: no such file (inputs are .txt files, .jsonl files with a 'text' "
                        "field, or any other text file)")
    texts = (read_texts([Path(p) for p in args.inputs]) if args.inputs
             else pretraining_text([t for t in args.tasks.split(",") if t], args.n_per_task))
    tok = train_bpe(texts, args.vocab_size, args.min_frequency, args.split_digits)
    save_tokenizer(tok, args.out)
    print(f"wrote {args.out}: vocab {tok.vocab_size}, bos={tok.bos_token!r}, eos={tok.eos_token!r}")
    return 0
