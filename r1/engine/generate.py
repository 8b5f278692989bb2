"""KV-cached batched generation over a contiguous cache (left-padded prompts).

This is the simple, static-batch path: all prompts start together and the batch runs until
every row is done. DeepSeek models cache only the MLA latent and decode in the absorbed form.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from r1.engine.sampling import SamplingParams, sample
from r1.model.base import CausalLM
from r1.model.cache import KVCache


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (eos or a stop string) | "length"
    prompt_tokens: int


def _left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), n), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, n - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, n - len(p) :] = 1
    return ids, mask


def _check(model: CausalLM, prompts: list[list[int]], params: list[SamplingParams]) -> None:
    ctx = model.config.max_position_embeddings
    vocab = model.config.vocab_size
    for i, (p, sp) in enumerate(zip(prompts, params)):
        if not p:
            raise ValueError(f"prompt {i} is empty")
        if len(p) + sp.max_tokens > ctx:
            raise ValueError(f"prompt {i}: {len(p)} prompt tokens + max_tokens {sp.max_tokens} exceed the "
                             f"model's context of {ctx} tokens")
        if min(p) < 0 or max(p) >= vocab:
            raise ValueError(f"prompt {i} has token ids outside the vocabulary [0, {vocab})")


def decode_steps(model: CausalLM, prompts: list[list[int]],
                 params: list[SamplingParams]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (next tokens (b,), active (b,) bool) once per step. The caller decides when a row is
    done (eos, stop string, length) by setting `active[i] = False`; the loop ends when none is."""
    _check(model, prompts, params)
    device = model.device
    b = len(prompts)
    ids, mask = _left_pad(prompts, pad_id=0)
    ids, mask = ids.to(device), mask.to(device)
    max_new = max(p.max_tokens for p in params)
    cache = KVCache(b, ids.shape[1] + max_new, device)
    gens = [torch.Generator(device=device).manual_seed(p.seed) if p.seed is not None else None for p in params]
    pos = mask.sum(1) - 1  # position of each row's last prompt token
    active = torch.ones(b, dtype=torch.bool, device=device)
    with torch.inference_mode():
        logits = model(ids, attention_mask=mask, cache=cache, last_only=True)[:, -1]
        for _ in range(max_new):
            tok = sample(logits, params, gens)
            yield tok, active
            if not active.any():
                return
            pos = pos + 1
            logits = model(tok[:, None], positions=pos[:, None], cache=cache)[:, -1]


def generate(model: CausalLM, prompts: list[list[int]], params: SamplingParams | list[SamplingParams],
             tokenizer=None, eos_ids: list[int] | None = None,
             on_token: Callable[[int, int], None] | None = None) -> list[Completion]:
    """Generate for a batch of tokenized prompts. `tokenizer` (needed for stop strings and text)
    provides decode() and eos_token_ids; on_token(row, token_id) streams tokens as they come."""
    params = params if isinstance(params, list) else [params] * len(prompts)
    if len(params) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(params)} SamplingParams")
    if eos_ids is None:
        eos_ids = list(getattr(tokenizer, "eos_token_ids", None) or [])
        if not eos_ids and model.config.eos_token_id is not None:
            e = model.config.eos_token_id
            eos_ids = list(e) if isinstance(e, list) else [e]
    if any(p.stop for p in params) and tokenizer is None:
        raise ValueError("stop strings need a tokenizer to decode the generated text")
    out: list[list[int]] = [[] for _ in prompts]
    reason = ["length"] * len(prompts)
    texts: list[str | None] = [None] * len(prompts)
    stop_ids = [set(p.stop_token_ids) | (set() if p.ignore_eos else set(eos_ids)) for p in params]
    for tok, active in decode_steps(model, prompts, params):
        for i in range(len(prompts)):
            if not active[i]:
                continue
            t = int(tok[i])
            if t in stop_ids[i]:
                reason[i] = "stop"
                active[i] = False
                continue
            out[i].append(t)
            if len(out[i]) >= params[i].max_tokens:
                active[i] = False
            if on_token:
                on_token(i, t)
            if params[i].stop:
                text = tokenizer.decode(out[i])
                # only the newest token can have completed a stop string; search just the tail
                tail = max(0, len(text) - max(len(s) for s in params[i].stop) - 16)
                hits = [j for s in params[i].stop if (j := text.find(s, tail)) >= 0]
                if hits:
                    texts[i], reason[i] = text[: min(hits)], "stop"
                    active[i] = False
    return [Completion(ids, texts[i] if texts[i] is not None else (tokenizer.decode(ids) if tokenizer else ""),
                       reason[i], len(prompts[i])) for i, ids in enumerate(out)]
