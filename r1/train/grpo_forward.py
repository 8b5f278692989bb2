"""The policy's forward over a GRPO batch: each prompt once, its G completions against it.

A generation batch holds G completions of every prompt. Running [prompt + completion] rows (as
TRL does) computes every prompt G times, in the forward and again in the backward. Here the
prompts go through the model once (b = distinct prompts), their per-layer keys/values (or MLA
latents) are kept *with their autograd history*, and the completions run as a second pass whose
rows attend to their prompt's entries plus their own tokens. Gradients from all G completions
flow back into the one prompt computation, so the result equals the row-by-row forward (the slow
reference path, `shared=False`; tests/test_train_grpo.py checks logits and gradients agree).

It speaks the model's cache protocol (begin / write / commit, see r1/model/cache.py), so it
works for GQA and MLA layers alike. Both passes live in one `forward` so DDP sees one forward per
backward.

Shapes: u distinct prompts, b completion rows, P prompt width (left-padded), C completion width
(right-padded), V vocabulary.
"""
from __future__ import annotations

import torch
from torch import nn

from r1.model.layers import positions_from_mask


class PrefixCache:
    """Cache protocol for the two passes: pass 1 records the prompts' tensors, pass 2 prepends
    them (gathered to each completion row by `rows`) to the completion's own."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows  # (b,) index of each completion row's prompt in the prompt batch
        self.prefix: dict[int, dict[str, torch.Tensor]] = {}
        self.prefix_pos: torch.Tensor | None = None  # (u, P) key positions, PAD_POS on padding
        self._pos: torch.Tensor | None = None
        self.length = 0

    def begin(self, positions: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        if self.prefix_pos is None:
            self._pos = key_pos
            return key_pos
        return torch.cat([self.prefix_pos.index_select(0, self.rows), key_pos], 1)  # (b, P + C)

    def write(self, layer: int, **new: torch.Tensor) -> list[torch.Tensor]:
        if self.prefix_pos is None:
            self.prefix[layer] = new
            return list(new.values())
        pre = self.prefix[layer]
        return [torch.cat([pre[name].index_select(0, self.rows), x], 1) for name, x in new.items()]

    def commit(self) -> None:
        if self.prefix_pos is None:
            self.prefix_pos = self._pos
            self.length = self._pos.shape[1]

    def for_rows(self, sel: torch.Tensor) -> "PrefixCache":
        """After pass 1: the same prompt entries for a subset `sel` of the completion rows."""
        view = PrefixCache(self.rows.index_select(0, sel))
        view.prefix, view.prefix_pos, view.length = self.prefix, self.prefix_pos, self.length
        return view


class GroupedLM(nn.Module):
    """Wraps a CausalLM: forward(...) -> logits (b, C, V) where [:, t] predicts completion token t."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.config = lm.config  # what dist.wrap_model and checkpoints look for

    def forward(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                completion_mask: torch.Tensor, rows: torch.Tensor, shared: bool = True,
                packed: bool = False, buckets: int = 1) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """prompt_ids/mask (u, P) left-padded; completion_ids/mask (b, C) right-padded; rows (b,)
        maps completion rows to prompts. shared=False is the reference: full rows, prompt repeated.

        packed=True: only the logits that predict a real completion token (the head and the
        log-softmax over padding are pure waste), as (logits (n, V), where (n,)): `where` are the
        flat indices into (b*C) of the tokens they predict. With buckets > 1 the completion rows,
        sorted by length, run in that many passes, each padded only to its own longest row:
        attention and the attention projections work on the padded (rows, width) layout, so on
        completions of varied length most of the padding goes."""
        b, C = completion_ids.shape
        P = prompt_ids.shape[1]
        if not shared:
            ids = torch.cat([prompt_ids.index_select(0, rows), completion_ids], 1)  # (b, P + C)
            mask = torch.cat([prompt_mask.index_select(0, rows), completion_mask], 1)
            at = torch.arange(P - 1, P - 1 + C, device=ids.device).expand(b, C)
            return self.lm(ids, attention_mask=mask, logits_at=at)
        cache = PrefixCache(rows)
        pos = positions_from_mask(prompt_mask)
        last = torch.full((prompt_ids.shape[0],), P - 1, device=prompt_ids.device)
        first = self.lm(prompt_ids, positions=pos, attention_mask=prompt_mask, cache=cache, logits_at=last,
                        ffn_real_only=packed)  # (u, 1, V)
        first = first.index_select(0, rows)  # (b, 1, V): predicts completion token 0
        if packed:
            row0 = completion_mask[:, 0].nonzero().squeeze(1)  # rows whose token 0 is real
            first = first[:, 0].index_select(0, row0)  # (n0, V)
            if C == 1:
                return first, row0 * C
        elif C == 1:
            return first
        start = prompt_mask.sum(1).index_select(0, rows)  # each row's prompt length = its first position
        cpos = start[:, None] + torch.arange(C, device=completion_ids.device)  # (b, C)
        if packed:
            logits, where = [first], [row0 * C]
            lengths = completion_mask.sum(1)
            order = lengths.argsort() if buckets > 1 else torch.arange(b, device=lengths.device)
            for sel in order.tensor_split(min(buckets, b)):  # (b_k,) rows of one pass
                width = int(lengths.index_select(0, sel).max())
                if width < 2:  # no token beyond the first, which the prompt pass predicted
                    continue
                mask = completion_mask.index_select(0, sel)[:, :width]
                r, t = mask[:, 1:].nonzero(as_tuple=True)  # the real tokens 1..: (r, t + 1)
                logits.append(self.lm(completion_ids.index_select(0, sel)[:, :width],
                                      positions=cpos.index_select(0, sel)[:, :width], attention_mask=mask,
                                      cache=cache.for_rows(sel), logits_flat=r * width + t,  # t predicts t + 1
                                      ffn_real_only=True))
                where.append(sel.index_select(0, r) * C + t + 1)
            return torch.cat(logits), torch.cat(where)
        at = torch.arange(C - 1, device=completion_ids.device).expand(b, C - 1)
        rest = self.lm(completion_ids, positions=cpos, attention_mask=completion_mask, cache=cache, logits_at=at)
        return torch.cat([first, rest], 1)  # (b, C, V)
