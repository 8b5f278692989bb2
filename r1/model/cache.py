"""Contiguous KV cache for batched generation.

Each attention layer decides what it caches (GQA: k and v; MLA: only the normalized latent and
the roped key), so the cache stores named tensors per layer, all laid out (b, t, ...). The paged
cache of the engine implements the same three calls (`begin`, `write`, `commit`), which is all
the model knows of a cache.
"""
from __future__ import annotations

import torch

from r1.model.layers import PAD_POS


class KVCache:
    def __init__(self, batch: int, capacity: int, device: torch.device | str = "cpu"):
        self.batch, self.capacity = batch, capacity
        self.length = 0  # committed slots
        self._pending = 0
        self.key_pos = torch.full((batch, capacity), PAD_POS, dtype=torch.long, device=device)  # (b, t)
        self.layers: dict[int, dict[str, torch.Tensor]] = {}

    def begin(self, positions: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """Reserve slots for a step's tokens at `positions` (b, s); `key_pos` (b, s) is what they
        count as when attended to (PAD_POS for padding). Returns the key positions (b, t) of
        everything cached plus this step, for the attention mask."""
        b, s = positions.shape
        if b != self.batch:
            raise ValueError(f"cache was made for batch {self.batch}, got a step with batch {b}")
        if self.length + s > self.capacity:
            raise ValueError(f"KV cache capacity {self.capacity} exceeded: {self.length} cached + {s} new tokens")
        self._pending = s
        self.key_pos[:, self.length : self.length + s] = key_pos
        return self.key_pos[:, : self.length + s]

    def write(self, layer: int, **new: torch.Tensor) -> list[torch.Tensor]:
        """Store this step's tensors (b, s, ...) for `layer`; return all cached ones (b, t, ...)."""
        store = self.layers.setdefault(layer, {})
        out = []
        end = self.length + self._pending
        for name, x in new.items():
            buf = store.get(name)
            if buf is None:
                buf = store[name] = x.new_zeros((self.batch, self.capacity, *x.shape[2:]))
            buf[:, self.length : end] = x
            out.append(buf[:, :end])
        return out

    def commit(self) -> None:
        self.length += self._pending
        self._pending = 0

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for d in self.layers.values() for t in d.values())
