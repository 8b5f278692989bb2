"""A `tokenizers.Tokenizer` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.

A GGUF carries no tokenizer.json: it stores the token list, per-token types, merges (byte-level BPE)
or scores (SentencePiece), the special ids and the chat template. The *pre-tokenizer* is not stored,
only a name for it (`tokenizer.ggml.pre`), which llama.cpp maps to a list of split regexes in
`llama-vocab.cpp`; `PRE_TOKENIZERS` is that map, for the names the dense R1 bases use.

Two vocabulary models:
  "gpt2"  byte-level BPE (Llama 3, Qwen2/3, SmolLM2, the R1-Distill models): tokens are spelled in
          GPT-2's byte-to-unicode alphabet, merges are given.
  "llama" SentencePiece BPE (Llama 2, Mistral): "▁" marks a space, unknown bytes fall back to
          `<0xNN>` tokens, merge order is implied by the per-token scores.

Tokens typed CONTROL (e.g. `<|im_start|>`) become special added tokens and USER_DEFINED ones plain
added tokens, so the text `<|im_start|>` encodes to its one id instead of being split into pieces, as
llama.cpp does when it parses specials.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import TokenType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from r1.formats.gguf_file import GGUFError, GGUFFile

__all__ = ["GGUFTokenizerSpec", "PRE_TOKENIZERS", "tokenizer_from_gguf"]

# --- split regexes, as llama.cpp's llama-vocab.cpp lists them per `tokenizer.ggml.pre` ---------------
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@dataclass(frozen=True)
class PreTokenizer:
    splits: tuple[str, ...]  # applied in order, each splitting the pieces of the previous one
    # Llama 3 (tiktoken-style): a word that is itself a token is taken whole before any merging.
    ignore_merges: bool = False
    # Whether llama.cpp adds BOS for this vocabulary when the file has no tokenizer.ggml.add_bos_token.
    add_bos: bool = False


PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "gpt2": PreTokenizer((_GPT2,)),
    # SmolLM/StarCoder: every digit is its own piece, then the GPT-2 split.
    "smollm": PreTokenizer((r"\p{N}", _GPT2)),
    "starcoder": PreTokenizer((r"\p{N}", _GPT2)),
    "llama-bpe": PreTokenizer((_LLAMA3,), ignore_merges=True, add_bos=True),
    "llama3": PreTokenizer((_LLAMA3,), ignore_merges=True, add_bos=True),
    "llama-v3": PreTokenizer((_LLAMA3,), ignore_merges=True, add_bos=True),
    "smaug-bpe": PreTokenizer((_LLAMA3,)),
    "qwen2": PreTokenizer((_QWEN2,)),
    "deepseek-r1-qwen": PreTokenizer((_QWEN2,)),
}
# Files written before llama.cpp recorded the pre-tokenizer (spring 2024) have no name; they were
# tokenized with the GPT-2 split, which is also what transformers assumes.
DEFAULT_PRE = "gpt2"


@dataclass
class GGUFTokenizerSpec:
    tokenizer: Tokenizer
    model: str  # tokenizer.ggml.model: "gpt2" or "llama"
    pre: str | None  # tokenizer.ggml.pre
    bos_token_id: int | None
    bos_token: str | None
    eos_token_id: int | None
    eos_token: str | None
    pad_token_id: int | None
    pad_token: str | None
    unk_token_id: int | None
    unk_token: str | None
    # When set, `tokenizer.encode(text)` adds BOS/EOS itself (a post-processor); pass
    # add_special_tokens=False when the text was rendered by a chat template that already writes them.
    add_bos_token: bool
    add_eos_token: bool
    chat_template: str | None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def _field(f: GGUFFile, key: str, kind: type, required: bool = False):
    v = f.get(key)
    if v is None:
        if required:
            raise GGUFError(f"{f.path}: metadata {key!r} is missing (no tokenizer in this file?)")
        return None
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected an integer, found {type(v).__name__}")
    if kind is bool and not isinstance(v, bool):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected a bool, found {type(v).__name__}")
    if kind is str and not isinstance(v, str):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected a string, found {type(v).__name__}")
    if kind is list and not isinstance(v, list):
        raise GGUFError(f"{f.path}: metadata {key!r}: expected an array of strings, found {type(v).__name__}")
    return v


def _vocab(tokens: list[str]) -> dict[str, int]:
    # A token listed twice keeps its first id; the later id is unreachable by encoding either way.
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    return vocab


def _merges(f: GGUFFile) -> list[tuple[str, str]]:
    merges = _field(f, "tokenizer.ggml.merges", list) or []
    out = []
    for i, m in enumerate(merges):
        parts = m.split(" ")
        if len(parts) != 2:
            raise GGUFError(f"{f.path}: metadata 'tokenizer.ggml.merges'[{i}] = {m!r} is not two space-separated pieces")
        out.append((parts[0], parts[1]))
    return out


def _merges_from_scores(tokens: list[str], scores, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """SentencePiece BPE merges best-first: every split of a token into two tokens, ranked by the merged
    token's score (llama.cpp's SPM tokenizer merges the highest-scoring adjacent pair first)."""
    ranked = []
    for tok, score in zip(tokens, scores):
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            if left in vocab and right in vocab:
                ranked.append((-float(score), vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _gpt2_tokenizer(f: GGUFFile, tokens: list[str]) -> Tokenizer:
    pre_name = _field(f, "tokenizer.ggml.pre", str) or DEFAULT_PRE
    if pre_name not in PRE_TOKENIZERS:
        raise GGUFError(f"{f.path}: metadata tokenizer.ggml.pre={pre_name!r} is not supported; r1 knows "
                        f"{sorted(PRE_TOKENIZERS)}")
    pre = PRE_TOKENIZERS[pre_name]
    tok = Tokenizer(models.BPE(vocab=_vocab(tokens), merges=_merges(f), ignore_merges=pre.ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in pre.splits]
        # The splits already happened; ByteLevel only respells bytes into the token alphabet.
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def _spm_tokenizer(f: GGUFFile, tokens: list[str]) -> Tokenizer:
    scores = f.get("tokenizer.ggml.scores")
    vocab = _vocab(tokens)
    if "tokenizer.ggml.merges" in f.metadata:
        merges = _merges(f)
    elif scores is not None and len(scores) == len(tokens):
        merges = _merges_from_scores(tokens, scores, vocab)
    else:
        raise GGUFError(f"{f.path}: a 'llama' (SentencePiece) vocabulary needs tokenizer.ggml.scores with one score "
                        f"per token, or tokenizer.ggml.merges")
    unk_id = _field(f, "tokenizer.ggml.unknown_token_id", int)
    unk = tokens[unk_id] if unk_id is not None and 0 <= unk_id < len(tokens) else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    add_space = _field(f, "tokenizer.ggml.add_space_prefix", bool)
    add_space = True if add_space is None else add_space  # llama.cpp's default for SentencePiece
    # llama.cpp escapes spaces as "▁" and, with add_space_prefix, puts one "▁" before each run of text
    # (at the start and after every special token): a normalizer does both, per non-special segment.
    steps = ([normalizers.Prepend("▁")] if add_space else []) + [normalizers.Replace(" ", "▁")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = None
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_space:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    return tok


BUILDERS = {"gpt2": _gpt2_tokenizer, "llama": _spm_tokenizer}


def _add_typed_tokens(f: GGUFFile, tok: Tokenizer, tokens: list[str]) -> None:
    types = f.get("tokenizer.ggml.token_type")
    if types is None:
        return
    if not isinstance(types, np.ndarray) or types.dtype.kind not in "iu":
        raise GGUFError(f"{f.path}: metadata 'tokenizer.ggml.token_type' is not an array of integers")
    if len(types) != len(tokens):
        raise GGUFError(f"{f.path}: metadata 'tokenizer.ggml.token_type' has {len(types)} entries for {len(tokens)} tokens")
    special, plain = [], []
    for t, kind in zip(tokens, types.tolist()):
        if kind == TokenType.CONTROL:
            special.append(t)
        elif kind == TokenType.USER_DEFINED:
            plain.append(t)
    # An added token whose text is already in the vocabulary keeps that id, so ids do not move.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    if tok.get_vocab_size(with_added_tokens=True) != len(_vocab(tokens)):
        raise GGUFError(f"{f.path}: adding the special tokens grew the vocabulary past the token list")


def tokenizer_from_gguf(path_or_reader: str | Path | GGUFFile) -> GGUFTokenizerSpec:
    f = path_or_reader if isinstance(path_or_reader, GGUFFile) else GGUFFile(path_or_reader)
    try:
        return _build(f)
    finally:
        if f is not path_or_reader:
            f.close()


def _build(f: GGUFFile) -> GGUFTokenizerSpec:
    model = _field(f, "tokenizer.ggml.model", str, required=True)
    if model not in BUILDERS:
        raise GGUFError(f"{f.path}: metadata tokenizer.ggml.model={model!r} is not supported; r1 builds "
                        f"{sorted(BUILDERS)}")
    tokens = _field(f, "tokenizer.ggml.tokens", list, required=True)
    if not tokens:
        raise GGUFError(f"{f.path}: metadata 'tokenizer.ggml.tokens' is empty")
    tok = BUILDERS[model](f, tokens)
    _add_typed_tokens(f, tok, tokens)

    def special(key: str) -> tuple[int | None, str | None]:
        i = _field(f, f"tokenizer.ggml.{key}", int)
        if i is None:
            return None, None
        if not 0 <= i < len(tokens):
            raise GGUFError(f"{f.path}: metadata 'tokenizer.ggml.{key}'={i} is outside the {len(tokens)}-token vocabulary")
        return i, tokens[i]

    bos_id, bos = special("bos_token_id")
    eos_id, eos = special("eos_token_id")
    pad_id, pad = special("padding_token_id")
    unk_id, unk = special("unknown_token_id")
    add_bos = _field(f, "tokenizer.ggml.add_bos_token", bool)
    if add_bos is None:  # llama.cpp's defaults: BOS for SentencePiece and Llama 3, not for other byte-level BPE
        pre = PRE_TOKENIZERS.get(f.get("tokenizer.ggml.pre") or DEFAULT_PRE)
        add_bos = model == "llama" or (model == "gpt2" and pre is not None and pre.add_bos)
    add_eos = bool(_field(f, "tokenizer.ggml.add_eos_token", bool))
    specials = []
    if add_bos and bos is not None:
        specials.append((bos, bos_id))
    if add_eos and eos is not None:
        specials.append((eos, eos_id))
    if specials:
        def seg(x: str, type_id: int) -> str:  # [BOS] text [EOS], per sequence, like HF's Llama tokenizer
            parts = ([f"{bos}:{type_id}"] if add_bos and bos is not None else []) + [f"{x}:{type_id}"]
            return " ".join(parts + ([f"{eos}:{type_id}"] if add_eos and eos is not None else []))

        tok.post_processor = processors.TemplateProcessing(
            single=seg("$A", 0), pair=f"{seg('$A', 0)} {seg('$B', 1)}", special_tokens=list(dict(specials).items()))
    template = _field(f, "tokenizer.chat_template", str)
    return GGUFTokenizerSpec(tokenizer=tok, model=model, pre=f.get("tokenizer.ggml.pre"),
                             bos_token_id=bos_id, bos_token=bos, eos_token_id=eos_id, eos_token=eos,
                             pad_token_id=pad_id, pad_token=pad, unk_token_id=unk_id, unk_token=unk,
                             add_bos_token=bool(add_bos and bos is not None), add_eos_token=bool(add_eos and eos is not None),
                             chat_template=template)
