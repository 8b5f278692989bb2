"""Training data: texts -> packed token windows (pretraining), chats -> tokens with loss masks
(SFT), and a deterministic, resumable batch order shared by all ranks.

Every example becomes (input_ids, labels): labels[i] is the token to predict after position i,
or IGNORE where there is nothing to learn (prompt tokens, padding). The mask is decided where
the chat is rendered and travels with the tokens from there on.

The order of examples is a pure function of (seed, epoch), so a data position is two integers
and a resumed run reads exactly the batches the killed one would have read. Every rank walks the
same global order and takes its own slice of each step's global batch.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r1.errors import R1Error

IGNORE = -100  # label of positions without a loss (F.cross_entropy's ignore_index)


class DataError(R1Error, ValueError):
    pass


# ---------------------------------------------------------------- sources
def read_texts(sources: str | Path | Iterable[str | Path], text_field: str = "text") -> Iterator[str]:
    """Documents from .txt files (one document per file), .jsonl files (`text_field` of each
    line), or strings given directly (an iterable of str that are not paths, e.g. a generator)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    for src in sources:
        p = Path(src) if isinstance(src, Path) or (isinstance(src, str) and src.endswith((".txt", ".jsonl"))) else None
        if p is None:
            yield str(src)
        elif p.suffix == ".jsonl":
            for i, rec in enumerate(read_jsonl(p)):
                if text_field not in rec:
                    raise DataError(f"{p}:{i + 1}: no {text_field!r} field (has {', '.join(rec)})")
                yield str(rec[text_field])
        else:
            try:
                yield p.read_text(encoding="utf-8")
            except OSError as e:
                raise DataError(f"{p}: cannot read ({e})") from None


def read_jsonl(path: str | Path) -> Iterator[dict]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{i + 1}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{p}:{i + 1}: expected a JSON object, got {type(rec).__name__}")
        yield rec


# ---------------------------------------------------------------- datasets
@dataclass
class Batch:
    input_ids: torch.Tensor  # (b, s) long
    labels: torch.Tensor  # (b, s) long, IGNORE where no loss
    attention_mask: torch.Tensor | None = None  # (b, s) 1 = real token; None = no padding

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.input_ids.to(device), self.labels.to(device),
                     None if self.attention_mask is None else self.attention_mask.to(device))

    @property
    def num_targets(self) -> int:
        return int((self.labels != IGNORE).sum())


class PackedDataset:
    """Fixed-length windows over one long token stream (BOS doc EOS BOS doc EOS ...): window i
    holds seq_len + 1 tokens, inputs its first seq_len, labels its last seq_len."""

    def __init__(self, windows: torch.Tensor):
        if windows.dim() != 2 or windows.shape[1] < 2:
            raise DataError(f"packed windows must be (n, seq_len + 1), got {tuple(windows.shape)}")
        self.windows = windows

    def __len__(self) -> int:
        return self.windows.shape[0]

    def lengths(self) -> list[int]:
        return [self.windows.shape[1] - 1] * len(self)

    def collate(self, idx: Sequence[int]) -> Batch:
        w = self.windows[torch.as_tensor(list(idx), dtype=torch.long)]
        return Batch(w[:, :-1].contiguous(), w[:, 1:].contiguous())

    def split(self, eval_fraction: float) -> tuple["PackedDataset", "PackedDataset | None"]:
        n_eval = int(len(self) * eval_fraction)
        if n_eval == 0:
            return self, None
        return PackedDataset(self.windows[:-n_eval]), PackedDataset(self.windows[-n_eval:])


def pack_texts(texts: Iterable[str], tokenizer, seq_len: int, add_bos: bool = True) -> PackedDataset:
    """Tokenize documents, join them with BOS/EOS and cut the stream into windows."""
    if seq_len < 1:
        raise DataError(f"seq_len must be >= 1, got {seq_len}")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if eos is None:
        raise DataError(f"{tokenizer.origin}: has no eos_token; documents could not be separated")
    stream: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        for ids in tokenizer.encode_batch(batch):
            stream.extend(([bos] if add_bos and bos is not None else []) + ids + [eos])
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= 256:
            flush()
    flush()
    n = (len(stream) - 1) // seq_len
    if n < 1:
        raise DataError(f"the corpus has {len(stream)} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}")
    t = torch.tensor(stream[: n * seq_len + 1], dtype=torch.long)
    # Window i = t[i*L : (i+1)*L + 1]: consecutive windows share one token, so every token is a target once.
    windows = t.unfold(0, seq_len + 1, seq_len)
    return PackedDataset(windows.contiguous())


class ExampleDataset:
    """Variable-length examples (SFT): each a list of ids and a same-length loss mask; batches
    are right-padded to their longest member (the sampler buckets by length to keep that short)."""

    def __init__(self, examples: list[tuple[list[int], list[int]]], pad_id: int):
        for i, (ids, mask) in enumerate(examples):
            if len(ids) != len(mask):
                raise DataError(f"example {i}: {len(ids)} tokens but {len(mask)} mask entries")
            if len(ids) < 2 or not any(mask[1:]):
                raise DataError(f"example {i}: nothing to learn (no masked-in token after the first)")
        self.examples = examples
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.examples)

    def lengths(self) -> list[int]:
        return [len(ids) - 1 for ids, _ in self.examples]

    def collate(self, idx: Sequence[int]) -> Batch:
        rows = [self.examples[i] for i in idx]
        s = max(len(ids) for ids, _ in rows) - 1
        input_ids = torch.full((len(rows), s), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), s), IGNORE, dtype=torch.long)
        attn = torch.zeros((len(rows), s), dtype=torch.long)
        for r, (ids, mask) in enumerate(rows):
            n = len(ids) - 1
            ids_t = torch.tensor(ids, dtype=torch.long)
            input_ids[r, :n] = ids_t[:-1]
            keep = torch.tensor(mask[1:], dtype=torch.bool)  # the mask of the token being predicted
            labels[r, :n] = torch.where(keep, ids_t[1:], torch.full_like(ids_t[1:], IGNORE))
            attn[r, :n] = 1
        return Batch(input_ids, labels, attn)

    def split(self, eval_fraction: float) -> tuple["ExampleDataset", "ExampleDataset | None"]:
        n_eval = int(len(self) * eval_fraction)
        if n_eval == 0:
            return self, None
        return (ExampleDataset(self.examples[:-n_eval], self.pad_id),
                ExampleDataset(self.examples[-n_eval:], self.pad_id))


# ---------------------------------------------------------------- batch order
class BatchSampler:
    """Global batches of example indices, reshuffled per epoch from (seed, epoch).

    bucket: sort each window of `bucket_batches` global batches by length before cutting it
    into batches (then shuffle the batch order), so padded batches hold similar lengths.
    State = (epoch, batch index within the epoch): what a checkpoint stores as the data position.
    A last partial batch of an epoch is dropped, so every step has the same number of examples.
    """

    def __init__(self, lengths: Sequence[int], global_batch: int, seed: int = 0, shuffle: bool = True,
                 bucket: bool = False, bucket_batches: int = 16):
        if global_batch < 1:
            raise DataError(f"global batch must be >= 1, got {global_batch}")
        if len(lengths) < global_batch:
            raise DataError(f"the dataset has {len(lengths)} examples, fewer than one global batch of {global_batch} "
                            "(batch_size x grad_accum x ranks); add data or shrink the batch")
        self.lengths = list(lengths)
        self.global_batch, self.seed, self.shuffle = global_batch, seed, shuffle
        self.bucket, self.bucket_batches = bucket, max(1, bucket_batches)
        self.epoch, self.pos = 0, 0
        self._order: list[list[int]] | None = None

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        n = len(self.lengths)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist() if self.shuffle else list(range(n))
        if self.bucket:
            w = self.global_batch * self.bucket_batches
            order = [i for k in range(0, n, w) for i in sorted(order[k:k + w], key=lambda j: self.lengths[j])]
        batches = [order[k:k + self.global_batch] for k in range(0, n - self.global_batch + 1, self.global_batch)]
        if self.bucket and self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        return batches

    @property
    def batches_per_epoch(self) -> int:
        return len(self.lengths) // self.global_batch

    def next(self) -> list[int]:
        if self._order is None:
            self._order = self._epoch_batches(self.epoch)
        if self.pos >= len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._epoch_batches(self.epoch)
        b = self._order[self.pos]
        self.pos += 1
        return b

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = None


def micro_batches(global_idx: list[int], rank: int, world_size: int, grad_accum: int) -> list[list[int]]:
    """This rank's micro-batches of a global batch: the batch is cut into grad_accum x world_size
    equal parts and part (m, r) goes to rank r's m-th micro-step. Which rank gets which part
    does not change the summed gradient, only its rounding."""
    parts = grad_accum * world_size
    if len(global_idx) % parts:
        raise DataError(f"global batch of {len(global_idx)} does not split into {parts} micro-batches")
    mb = len(global_idx) // parts
    return [global_idx[(m * world_size + rank) * mb:(m * world_size + rank + 1) * mb] for m in range(grad_accum)]
