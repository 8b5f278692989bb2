"""Paged KV cache: fixed-size blocks with reference counts and prefix caching.

Memory (BlockManager) decides which physical block holds which tokens of which sequence;
storage (PagedKVCache) holds the tensors; PagedStep is the view one forward pass gets, which
speaks the model's cache protocol (begin / write / commit). Storage is per layer and per
cached name, laid out (num_blocks * block_size, ...): GQA layers store k and v, MLA layers only
the normalized latent and the roped key (DeepSeek-V3 eq. 1-3: c_KV and k_R).

Prefix caching: a full block is identified by the hash of its tokens chained with the hash of
the blocks before it, so equal prefixes share blocks. A block is only reused once its KV has
actually been computed -- a sibling admitted in the same step as the sequence that will compute
it waits one step instead (the scheduler asks `waits_for_prefix`). GRPO samples G completions of
one prompt, so the prompt is computed once and shared G ways.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from r1.engine.paged_attention import paged_decode_attention, write_and_attend
from r1.engine.sequence import Sequence
from r1.model.layers import PAD_POS


@dataclass
class Block:
    ref: int = 0
    hash: int | None = None
    computed: bool = False


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}")
        self.block_size, self.prefix_caching = block_size, prefix_caching
        self.blocks = [Block() for _ in range(num_blocks)]
        self.free: deque[int] = deque(range(num_blocks))
        self.by_hash: dict[int, int] = {}
        self.hits = self.queries = 0  # prefix-cache statistics, in blocks

    # -- accounting
    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        return 1.0 - len(self.free) / len(self.blocks)

    def blocks_needed(self, n_tokens: int) -> int:
        return -(-n_tokens // self.block_size)

    def _hashes(self, ids: list[int]) -> list[int]:
        out, h = [], 0
        for i in range(len(ids) // self.block_size):
            h = hash((h, tuple(ids[i * self.block_size : (i + 1) * self.block_size])))
            out.append(h)
        return out

    def _take(self, bid: int | None = None) -> int:
        if bid is None:
            bid = self.free.popleft()
        else:
            self.free.remove(bid)
        b = self.blocks[bid]
        if b.hash is not None and self.by_hash.get(b.hash) == bid:  # recycled: forget old content
            del self.by_hash[b.hash]
        b.hash, b.computed, b.ref = None, False, 1
        return bid

    # -- prefix cache lookups
    def _cached_prefix(self, seq: Sequence) -> tuple[list[int], list[int], bool]:
        """(hashes of the full blocks, ids of leading blocks already computed, whether a leading
        block is registered but still being computed by another sequence)."""
        ids = seq.all_ids
        hashes = self._hashes(ids) if self.prefix_caching else []
        hit: list[int] = []
        for h in hashes:
            bid = self.by_hash.get(h)
            if bid is None:
                return hashes, hit, False
            if not self.blocks[bid].computed:
                return hashes, hit, True
            hit.append(bid)
        return hashes, hit, False

    def waits_for_prefix(self, seq: Sequence) -> bool:
        return self._cached_prefix(seq)[2]

    def can_allocate(self, seq: Sequence) -> bool:
        _, hit, _ = self._cached_prefix(seq)
        reusable_free = sum(1 for b in hit if self.blocks[b].ref == 0)
        return self.blocks_needed(len(seq)) - len(hit) + reusable_free <= self.num_free

    # -- lifecycle
    def allocate(self, seq: Sequence) -> None:
        """Blocks for all of seq's current tokens; leading blocks come from the prefix cache."""
        assert not seq.block_table, "allocate() on a sequence that holds blocks"
        hashes, hit, _ = self._cached_prefix(seq)
        if len(hit) * self.block_size >= len(seq):
            hit = hit[:-1]  # keep at least one token to compute: its logits start the decode
        self.queries += len(hashes)
        self.hits += len(hit)
        for bid in hit:
            if self.blocks[bid].ref == 0:
                self.free.remove(bid)
            self.blocks[bid].ref += 1
        seq.block_table = list(hit)
        for i in range(len(hit), self.blocks_needed(len(seq))):
            bid = self._take()
            seq.block_table.append(bid)
            if i < len(hashes):  # a full block: findable by later sequences once computed
                self.blocks[bid].hash = hashes[i]
                self.by_hash.setdefault(hashes[i], bid)
        seq.num_computed = len(hit) * self.block_size

    def can_append(self, seq: Sequence, n: int = 1) -> bool:
        return self.blocks_needed(len(seq) + n - 1) - len(seq.block_table) <= self.num_free

    def append_slots(self, seq: Sequence, n: int = 1) -> None:
        """Make room for n more tokens of seq (one for plain decode, more when speculating)."""
        while len(seq.block_table) < self.blocks_needed(len(seq) + n - 1):
            seq.block_table.append(self._take())

    def mark_computed(self, seq: Sequence) -> None:
        """After a forward pass: register the full blocks seq has computed by now. Hashes extend
        the sequence's chain incrementally, so a long decode does not rehash its whole past."""
        n_full = min(seq.num_computed, len(seq)) // self.block_size
        if len(seq.block_hashes) >= n_full:  # most decode steps: no block filled up
            return
        ids = seq.all_ids
        bs = self.block_size
        for i in range(len(seq.block_hashes), n_full):
            prev = seq.block_hashes[-1] if seq.block_hashes else 0
            h = hash((prev, tuple(ids[i * bs : (i + 1) * bs])))
            seq.block_hashes.append(h)
            b = self.blocks[seq.block_table[i]]
            if b.computed:
                continue
            b.computed = True
            if self.prefix_caching:
                b.hash = h
                self.by_hash.setdefault(h, seq.block_table[i])

    def free_seq(self, seq: Sequence) -> None:
        for bid in reversed(seq.block_table):  # tail blocks first back in line: least reusable
            b = self.blocks[bid]
            b.ref -= 1
            if b.ref == 0:
                if not b.computed:  # half-written: never let a lookup find it
                    if b.hash is not None and self.by_hash.get(b.hash) == bid:
                        del self.by_hash[b.hash]
                    b.hash = None
                self.free.append(bid)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed = 0


class PagedKVCache:
    """Tensor storage. kv_dtype "int8" stores each cached vector as int8 with one fp32 scale per
    token and name (symmetric absmax), dequantized when read: a 4x (fp32) / 2x (bf16) smaller cache."""

    def __init__(self, num_blocks: int, block_size: int, device: torch.device | str, kv_dtype: str = "auto"):
        if kv_dtype not in ("auto", "int8"):
            raise ValueError(f"kv_cache_dtype {kv_dtype!r}: choose 'auto' (model dtype) or 'int8'")
        self.num_slots, self.block_size, self.device, self.kv_dtype = num_blocks * block_size, block_size, device, kv_dtype
        self.store: dict[tuple[int, str], torch.Tensor] = {}
        self.scales: dict[tuple[int, str], torch.Tensor] = {}

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (n, ...) -> the tensors stored for it: [x], or with int8 [codes (n, ...), scales (n,)]
        (symmetric absmax, one fp32 scale per row)."""
        if self.kv_dtype != "int8":
            return [x]
        flat = x.reshape(x.shape[0], -1).float()
        scale = torch.linalg.vector_norm(flat, float("inf"), dim=-1).clamp(min=1e-8) / 127.0
        q = (flat / scale[:, None]).round().to(torch.int8).view(x.shape)  # |flat / scale| <= 127: no clamp
        return [q, scale]

    def decode(self, stored: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """encode's output (rows (...) leading) -> the values attention sees, in `dtype`."""
        if self.kv_dtype != "int8":
            return stored[0].to(dtype)
        q, scale = stored
        return (q.float() * scale.view(*scale.shape, *([1] * (q.dim() - scale.dim())))).to(dtype)

    def write(self, layer: int, name: str, x: torch.Tensor, slots: torch.Tensor) -> None:
        """x (n, ...) -> storage rows `slots` (n,)."""
        self.put(layer, name, self.encode(x), slots, x.dtype)

    def put(self, layer: int, name: str, stored: list[torch.Tensor], slots: torch.Tensor,
            dtype: torch.dtype | None = None) -> None:
        """Encoded rows (encode's output) -> storage rows `slots` (n,); `dtype` is what reads return."""
        key = (layer, name)
        if key not in self.store:
            first = stored[0]
            self.store[key] = torch.zeros((self.num_slots, *first.shape[1:]), dtype=first.dtype, device=self.device)
            if self.kv_dtype == "int8":
                self.scales[key] = torch.ones(self.num_slots, dtype=torch.float32, device=self.device)
                self.dtype = dtype or torch.float32
        self.store[key].index_copy_(0, slots, stored[0].to(self.store[key].dtype))
        if self.kv_dtype == "int8":
            self.scales[key].index_copy_(0, slots, stored[1])

    def read(self, layer: int, name: str, index: torch.Tensor) -> torch.Tensor:
        """index (b, t) of storage rows -> (b, t, ...)."""
        key = (layer, name)
        flat = index.reshape(-1)
        # index_select on the flat index is several times faster than advanced indexing on CPU
        stored = [self.store[key].index_select(0, flat)]
        if self.kv_dtype == "int8":
            stored.append(self.scales[key].index_select(0, flat))
        x = self.decode(stored, self.dtype if self.kv_dtype == "int8" else stored[0].dtype)
        return x.view(*index.shape, *x.shape[1:])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.store.values(), *self.scales.values()])


class PagedStep:
    """The cache as one forward pass sees it: new tokens go to `slots` (b, s) (-1 = padding),
    attention reads `index` (b, t) whose positions are `key_pos` (b, t) (PAD_POS = nothing)."""

    def __init__(self, cache: PagedKVCache, slots: torch.Tensor, index: torch.Tensor, key_pos: torch.Tensor,
                 table: torch.Tensor | None = None, lens: torch.Tensor | None = None):
        self.cache, self.index, self.key_pos = cache, index, key_pos
        valid = slots >= 0
        # which (row, col) of the step are real tokens; None = all of them (no gather needed)
        self._where = None if bool(valid.all()) else valid.nonzero(as_tuple=True)
        self._slots = slots.reshape(-1) if self._where is None else slots[valid]
        # block tables (b, width) and key counts (b,) when this decode step attends in place (attend)
        self._table, self._lens, self._checked = table, lens, False

    @property
    def slots(self) -> torch.Tensor:
        """(n,) storage rows of the step's real tokens, in row-major order."""
        return self._slots

    @property
    def in_place(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(block tables (b, width), key counts (b,)) when this decode step attends in place, else None."""
        return None if self._table is None else (self._table, self._lens)

    def begin(self, positions: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        return self.key_pos

    def write(self, layer: int, **new: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for name, x in new.items():  # x (b, s, ...)
            rows = x.reshape(-1, *x.shape[2:]) if self._where is None else x[self._where]
            self.cache.write(layer, name, rows, self._slots)
            out.append(self.cache.read(layer, name, self.index))
        return out

    def commit(self) -> None:
        pass

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               scale: float) -> torch.Tensor | None:
        """A one-token-per-row decode step's attention read in place from the blocks (the native
        kernel, r1/engine/paged_attention.py): q (b, 1, H, d) and this step's k, v (b, 1, KV, d),
        written first -> (b, 1, H, d). None when this step attends the torch way (write, then
        gather + SDPA): the runner enables it only where the kernel applies."""
        if self._table is None:
            return None
        self.cache.write(layer, "k", k[:, 0], self._slots)
        self.cache.write(layer, "v", v[:, 0], self._slots)
        o = paged_decode_attention(q[:, 0], self.cache.store[(layer, "k")], self.cache.store[(layer, "v")],
                                   self._table, self._lens, self.cache.block_size, scale, check=not self._checked)
        self._checked = True  # the inputs are checked on the first layer; the rest are alike
        return o[:, None]


class InPlaceStep:
    """A plain decode step's cache view inside a compiled forward (r1/engine/compiled.py): each
    layer writes its new K/V and attends in place through the `r1::paged_write_attend` op, what
    PagedStep.attend does eagerly. Built in the graph from plain tensors (PagedStep's
    constructor looks at values). For models whose every layer attends in place (GQA): an MLA
    layer would call `write`, which this view does not serve."""

    def __init__(self, cache: PagedKVCache, slots: torch.Tensor, table: torch.Tensor, lens: torch.Tensor):
        self.cache, self.slots, self.table, self.lens = cache, slots, table, lens

    def begin(self, positions: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        return key_pos  # the mask built from it goes unused: attention reads the blocks

    def write(self, layer: int, **new: torch.Tensor) -> list[torch.Tensor]:
        raise RuntimeError(f"layer {layer} does not attend in place: InPlaceStep serves GQA layers only")

    def commit(self) -> None:
        pass

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """q (b, 1, H, d), this step's k, v (b, 1, KV, d) -> (b, 1, H, d)."""
        o = write_and_attend(q[:, 0].contiguous(), k[:, 0].contiguous(), v[:, 0].contiguous(),
                             self.cache.store[(layer, "k")], self.cache.store[(layer, "v")], self.slots,
                             self.table, self.lens, self.cache.block_size, scale)
        return o[:, None]


class DeferredStep:
    """A decode step's cache view for a compiled forward (r1/engine/compiled.py): attention reads
    each row's cached past, `index` (b, t) at `key_pos` (b, t), followed by the step's own new
    entries, and the new entries are collected in `new`, encoded as stored (rows b*s), instead of
    written -- the storage write (an in-place scatter) stays outside the compiled graph, done by
    the caller afterwards with `PagedKVCache.put`."""

    def __init__(self, cache: PagedKVCache, index: torch.Tensor, key_pos: torch.Tensor):
        self.cache, self.index, self.key_pos = cache, index, key_pos
        self.new: dict[tuple[int, str], torch.Tensor] = {}

    def begin(self, positions: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.key_pos, key_pos], dim=1)  # (b, t + s)

    def write(self, layer: int, **new: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for name, x in new.items():  # x (b, s, ...)
            stored = self.new[(layer, name)] = self.cache.encode(x.reshape(-1, *x.shape[2:]))  # rows (b s)
            past = self.cache.read(layer, name, self.index)  # (b, t, ...)
            out.append(torch.cat([past, self.cache.decode(stored, past.dtype).view(x.shape)], dim=1))
        return out

    def commit(self) -> None:
        pass


def build_step(cache: PagedKVCache, seqs: list[Sequence], starts: list[int], tokens: list[list[int]],
               device, in_place: bool = False) -> tuple[PagedStep, torch.Tensor, torch.Tensor]:
    """Batch tensors for computing `tokens[i]` at positions starts[i].. of each sequence (whose
    block table must already cover them): the cache view, input ids (b, s), positions (b, s).
    in_place: a decode step (one token a row) whose attention may read the blocks in place
    (PagedStep.attend); the caller has checked that the kernel applies.

    Vectorized over rows (a decode step of 128 sequences would otherwise spend longer in this
    Python loop than in a tiny model's forward); `build_step_reference` is the row-by-row
    statement of the same thing, and the tests hold them equal."""
    bs = cache.block_size
    b = len(seqs)
    n = torch.tensor([len(tk) for tk in tokens], dtype=torch.long)  # (b,) new tokens per row
    st = torch.tensor(starts, dtype=torch.long)  # (b,)
    s, t = int(n.max()), int((st + n).max())
    width = max(len(q.block_table) for q in seqs) or 1
    table = torch.tensor([q.block_table + [0] * (width - len(q.block_table)) for q in seqs],
                         dtype=torch.long).view(b, width)  # (b, width) padded block tables
    ids = torch.tensor([list(tk) + [0] * (s - len(tk)) for tk in tokens], dtype=torch.long).view(b, s)
    col = torch.arange(s)[None, :]  # (1, s)
    new = col < n[:, None]  # (b, s) real tokens
    p = st[:, None] + col  # (b, s) their positions
    pos = torch.where(new, p, 0)
    blk = (p // bs).clamp(max=width - 1)
    slots = torch.where(new, table.gather(1, blk) * bs + p % bs, -1)
    k = torch.arange(t)[None, :]  # (1, t)
    seen = k < (st + n)[:, None]  # (b, t) positions the row attends to
    kblk = (k // bs).clamp(max=width - 1).expand(b, t)
    index = torch.where(seen, table.gather(1, kblk) * bs + k % bs, 0)
    key_pos = torch.where(seen, k, PAD_POS)
    lens = st + n if in_place else None
    step = PagedStep(cache, slots.to(device), index.to(device), key_pos.to(device), table if in_place else None, lens)
    return step, ids.to(device), pos.to(device)


def build_step_reference(cache: PagedKVCache, seqs: list[Sequence], starts: list[int], tokens: list[list[int]],
                         device) -> tuple[PagedStep, torch.Tensor, torch.Tensor]:
    """build_step, one row at a time (the slow statement the tests check build_step against)."""
    bs = cache.block_size
    b, s = len(seqs), max(len(t) for t in tokens)
    t = max(st + len(tk) for st, tk in zip(starts, tokens))
    ids = torch.zeros((b, s), dtype=torch.long)
    pos = torch.zeros((b, s), dtype=torch.long)
    slots = torch.full((b, s), -1, dtype=torch.long)
    index = torch.zeros((b, t), dtype=torch.long)
    key_pos = torch.full((b, t), PAD_POS, dtype=torch.long)
    for i, (seq, st, tk) in enumerate(zip(seqs, starts, tokens)):
        table = torch.tensor(seq.block_table, dtype=torch.long)
        n, e = len(tk), st + len(tk)
        ids[i, :n] = torch.tensor(tk, dtype=torch.long)
        p = torch.arange(st, e)
        pos[i, :n] = p
        slots[i, :n] = table[p // bs] * bs + p % bs
        k = torch.arange(e)
        index[i, :e] = table[k // bs] * bs + k % bs
        key_pos[i, :e] = k
    step = PagedStep(cache, slots.to(device), index.to(device), key_pos.to(device))
    return step, ids.to(device), pos.to(device)
