"""Execution: turn a scheduled Batch into one forward pass over the paged cache."""
from __future__ import annotations

import torch

from r1.engine.kv_cache import PagedKVCache, build_step
from r1.engine.scheduler import Batch
from r1.model.base import CausalLM


class ModelRunner:
    def __init__(self, model: CausalLM, cache: PagedKVCache):
        self.model, self.cache = model, cache
        self.device = model.model.embed_tokens.weight.device

    @torch.inference_mode()
    def run(self, batch: Batch, return_hidden: bool = False):
        """Logits (b, V) at each row's last computed token [, hidden states (b, s, D)]."""
        step, ids, pos = build_step(self.cache, batch.seqs, batch.starts, batch.ends, self.device)
        last = torch.tensor([e - s - 1 for s, e in zip(batch.starts, batch.ends)], device=self.device)
        out = self.model(ids, positions=pos, cache=step, logits_at=last, return_hidden=return_hidden)
        if return_hidden:
            return out[0][:, 0], out[1]
        return out[:, 0]
