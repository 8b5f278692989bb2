"""Execution: turn scheduled work into forward passes over the paged cache."""
from __future__ import annotations

import torch

from r1.engine.compiled import CompiledDecode
from r1.engine.kv_cache import PagedKVCache, build_step
from r1.engine.sequence import Sequence
from r1.model.base import CausalLM


class ModelRunner:
    def __init__(self, model: CausalLM, cache: PagedKVCache, compiled: CompiledDecode | None = None,
                 in_place_attention: bool = False):
        """in_place_attention: decode steps may attend with the native paged kernel
        (r1/engine/paged_attention.py) -- the engine has checked it is built and fits the model."""
        self.model, self.cache, self.compiled = model, cache, compiled
        self.device = model.device
        self.in_place_attention = in_place_attention

    @torch.inference_mode()
    def run(self, seqs: list[Sequence], starts: list[int], tokens: list[list[int]], logits_at: list[list[int]],
            return_hidden: bool = False):
        """Compute tokens[i] at positions starts[i].. of seqs[i]; logits (b, m, V) at the row
        offsets logits_at (b, m) [, hidden states (b, s, D) before the final norm]."""
        # the kernel is single-threaded: with more torch threads, SDPA's parallel loop is faster
        in_place = self.in_place_attention and torch.get_num_threads() == 1 and all(len(t) == 1 for t in tokens)
        step, ids, pos = build_step(self.cache, seqs, starts, tokens, self.device, in_place=in_place)
        at = torch.tensor(logits_at, device=self.device)
        # (a compiled graph reads the cache's storage tensors, which the first eager write makes)
        if self.compiled is not None and self.cache.store and self.compiled.accepts(tokens, return_hidden):
            return self.compiled(step, ids, pos, at)
        return self.model(ids, positions=pos, cache=step, logits_at=at, return_hidden=return_hidden)

    @torch.inference_mode()
    def run_mtp(self, seqs: list[Sequence], starts: list[int], next_ids: list[list[int]],
                hidden: list[torch.Tensor]) -> torch.Tensor:
        """The MTP module over positions starts[i].. (whose main hidden states are hidden[i]
        (n_i, D) and whose following tokens are next_ids[i]); logits (b, V) at each row's last."""
        step, ids, pos = build_step(self.cache, seqs, starts, next_ids, self.device)
        h = torch.zeros((len(seqs), ids.shape[1], hidden[0].shape[-1]), dtype=hidden[0].dtype, device=self.device)
        for i, x in enumerate(hidden):
            h[i, : x.shape[0]] = x
        last = torch.tensor([len(n) - 1 for n in next_ids], device=self.device)
        logits, _ = self.model.mtp_forward(h, ids, pos, cache=step, logits_at=last)
        return logits[:, 0]
