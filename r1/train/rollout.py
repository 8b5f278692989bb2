"""Rollouts for GRPO: prompts in, G sampled completions per prompt out, through the paged engine.

Why a fresh `LLMEngine` per generation batch: the engine holds a reference to the policy module
itself (no weight copy), so an optimizer step is visible to it at once -- but its prefix cache
still holds prompt KV computed with the old weights. A new engine starts with an empty cache,
sized to exactly this batch (blocks are allocated lazily), which costs far less than one
decode step; within the batch the G samples of a prompt share its prompt blocks (computed once).

Masks travel with the tokens: each completion carries its ids *including* the EOS token that
ended it (the policy must learn to emit it; the engine reports it separately) and whether it was
truncated at max_completion_length (DAPO's overlong filtering masks those).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from r1.engine.compiled import CompiledDecode, compile_decode
from r1.engine.engine import EngineConfig, LLMEngine
from r1.engine.sampling import SamplingParams
from r1.model.base import CausalLM

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    """One batch of groups on this rank; completion j of group g is row g * G + j."""
    num_generations: int
    prompt_ids: list[list[int]]  # per group
    completion_ids: list[list[int]]  # per completion, ending in the EOS when it stopped
    texts: list[str]  # per completion, the decoded text without the EOS (what rewards read)
    truncated: list[bool]  # hit max_tokens without an EOS
    records: list[dict[str, Any]]  # per group: the dataset record (prompt text + grading columns)
    gen_tokens: int = 0  # tokens sampled (EOS included)
    gen_seconds: float = 0.0
    cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache
    # per completion, the sampling policy's log-prob of each of its tokens (temperature applied,
    # before top-k/top-p): pi_old when the policy has moved on since (asynchronous rollouts)
    logps: list[list[float]] | None = None

    @property
    def num_groups(self) -> int:
        return len(self.prompt_ids)

    def select(self, groups: list[int]) -> "Rollout":
        """The rollout restricted to these groups (in this order); the generation statistics stay
        with the whole rollout (they are not per group)."""
        G = self.num_generations
        rows = [g * G + j for g in groups for j in range(G)]
        return Rollout(G, [self.prompt_ids[g] for g in groups], [self.completion_ids[r] for r in rows],
                       [self.texts[r] for r in rows], [self.truncated[r] for r in rows],
                       [self.records[g] for g in groups],
                       logps=None if self.logps is None else [self.logps[r] for r in rows])

    def state(self) -> dict[str, Any]:
        """Everything but the records, as JSON-able data (a checkpoint keeps a rollout sampled
        ahead this way; Python's json writes floats exactly, so the log-probs round-trip)."""
        return {k: getattr(self, k) for k in ("num_generations", "prompt_ids", "completion_ids", "texts", "truncated",
                                               "gen_tokens", "gen_seconds", "cached_prompt_tokens", "logps")}

    @staticmethod
    def from_state(state: dict[str, Any], records: list[dict[str, Any]]) -> "Rollout":
        return Rollout(records=list(records), **state)

    @staticmethod
    def concat(parts: list["Rollout"]) -> "Rollout":
        if not parts:
            raise ValueError("nothing to concatenate")
        G = parts[0].num_generations
        out = Rollout(G, [], [], [], [], [], logps=[] if all(p.logps is not None for p in parts) else None)
        for p in parts:
            out.prompt_ids += p.prompt_ids
            out.completion_ids += p.completion_ids
            out.texts += p.texts
            out.truncated += p.truncated
            out.records += p.records
            out.gen_tokens += p.gen_tokens
            out.gen_seconds += p.gen_seconds
            out.cached_prompt_tokens += p.cached_prompt_tokens
            if out.logps is not None:
                out.logps += p.logps
        return out


def rollout_compiler(model: CausalLM, rows: int) -> CompiledDecode | None:
    """A CompiledDecode for rollouts of up to `rows` samples (grpo.compile_rollouts), made once per
    policy and reused by every rollout's engine; None, logged with the reason, where the model
    cannot be compiled."""
    compiled, why = compile_decode(model, rows)
    if why:
        log.warning("grpo.compile_rollouts: decoding eagerly, %s", why)
    return compiled


def generate_groups(model: CausalLM, tokenizer, prompt_ids: list[list[int]], records: list[dict[str, Any]],
                    num_generations: int, max_completion_length: int, temperature: float = 1.0,
                    top_p: float = 1.0, top_k: int = 0, seeds: list[int] | None = None,
                    max_num_batched_tokens: int = 4096, block_size: int = 16, logprobs: bool = False,
                    decode_attention: str = "auto", compiled: CompiledDecode | None = None) -> Rollout:
    """Sample `num_generations` completions of each prompt with the engine (prefix-cached).

    seeds[g]: completion j of prompt g uses generator seed seeds[g] + j (the engine's rule for
    n > 1), so a rollout is reproducible whatever else is in the batch -- a resumed run
    regenerates exactly what the killed one would have. logprobs: also record each sampled token's
    log-prob under the sampling distribution (Rollout.logps). decode_attention: EngineConfig's.
    compiled: a CompiledDecode of `model` (rollout_compiler) whose graphs the decode steps use."""
    G = num_generations
    if seeds is not None and len(seeds) != len(prompt_ids):
        raise ValueError(f"{len(seeds)} seeds for {len(prompt_ids)} prompts")
    t0 = time.perf_counter()
    blocks_per_seq = -(-(max(map(len, prompt_ids)) + max_completion_length + 1) // block_size)
    cfg = EngineConfig(max_num_seqs=len(prompt_ids) * G, block_size=block_size,
                       num_blocks=blocks_per_seq * len(prompt_ids) * G + 1,
                       max_num_batched_tokens=max(max_num_batched_tokens, max(map(len, prompt_ids))),
                       prefix_caching=True, logprobs_mode="processed", decode_attention=decode_attention)
    was_training = model.training
    # No tokenizer inside the engine: it would detokenize every token of every sample as it
    # streams, which a trainer never reads; EOS ids become stop ids and the texts are decoded
    # once at the end.
    eos = list(getattr(tokenizer, "eos_token_ids", None) or [])
    engine = LLMEngine(model, None, cfg, compiled=compiled)  # puts the model in eval mode
    seqs = []
    for g, ids in enumerate(prompt_ids):
        sp = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_completion_length,
                            n=G, seed=None if seeds is None else seeds[g], stop_token_ids=eos,
                            logprobs=0 if logprobs else None, output_kind="final_only")
        engine.add_request(f"g{g}", ids, sp, think_in_prompt=False)
        # The Sequence objects know which EOS ended each sample (the public output drops it).
        seqs.append(engine.requests[f"g{g}"].seqs)
    done: dict[str, Any] = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out
    model.train(was_training)
    completion_ids, texts, truncated, logps, cached = [], [], [], [], 0
    for g in range(len(prompt_ids)):
        out = done[f"g{g}"]
        cached += sum(s.num_cached_prompt for s in seqs[g])
        for c, seq in zip(out.outputs, seqs[g]):
            ids = list(c.token_ids)
            texts.append(tokenizer.decode(ids))
            if c.finish_reason == "stop" and seq.stop_token is not None:
                ids.append(seq.stop_token)
            completion_ids.append(ids)
            truncated.append(c.finish_reason == "length")
            logps.append([e["logprob"] for e in seq.logprobs])  # one per token, the EOS's included
    return Rollout(G, [list(p) for p in prompt_ids], completion_ids, texts, truncated, list(records),
                   gen_tokens=sum(map(len, completion_ids)), gen_seconds=time.perf_counter() - t0,
                   cached_prompt_tokens=cached, logps=logps if logprobs else None)


def rollout_seed(run_seed: int, step: int, draw: int, index: int) -> int:
    """The generator seed of prompt `index` in draw `draw` of step `step` (the engine adds 0..G-1
    per sample): a function of those numbers only, so it does not depend on how the batch is
    split over ranks. Python hashes tuples of ints the same in every process."""
    return hash((run_seed, step, draw, index)) & (2**62 - 1)


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, P) ids and mask, right-aligned: every prompt ends in the same column, so every
    completion starts in the same column (as in TRL)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
    return ids, mask


def pad_right(rows: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(map(len, rows))) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
    return ids, mask


def score(rollout: Rollout, reward_funcs: list, prompts: list[Any] | None = None) -> torch.Tensor:
    """Every reward function on every completion, TRL's way: fn(prompts, completions, **columns)
    with one entry per completion (the group's record columns repeated G times, plus
    completion_ids). (N, F) float; NaN where a function returned None ("does not apply")."""
    G = rollout.num_generations
    n = len(rollout.texts)
    prompts = prompts if prompts is not None else [r.get("prompt") for r in rollout.records]
    per_row = [prompts[i // G] for i in range(n)]
    keys = [k for k in (rollout.records[0] if rollout.records else {}) if k != "prompt"]
    columns = {k: [rollout.records[i // G].get(k) for i in range(n)] for k in keys}
    columns["completion_ids"] = rollout.completion_ids
    out = torch.full((n, len(reward_funcs)), float("nan"))
    for j, fn in enumerate(reward_funcs):
        values = fn(per_row, list(rollout.texts), **columns)
        if len(values) != n:
            name = getattr(fn, "__name__", fn)
            raise ValueError(f"reward {name!r} returned {len(values)} values for {n} completions")
        for i, v in enumerate(values):
            if v is not None:
                out[i, j] = float(v)
    return out


def micro_batches(ro: Rollout, adv: torch.Tensor, batch_size: int, pad_id: int, mask_truncated: bool,
                  device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """The rollout's rows as training micro-batches: consecutive rows, batch_size at a time; each
    carries its distinct prompts once (u, P) and its completions (b, C), with `rows` mapping
    b -> u, the loss mask (no padding; with mask_truncated, DAPO's overlong filtering: no
    truncated rows), the rows' advantages and, when the rollout has them, the sampling policy's
    log-probs as old_logps (pi_old of asynchronous rollouts)."""
    G, dev, B = ro.num_generations, device, batch_size
    out = []
    for s in range(0, len(ro.completion_ids), B):
        rows = list(range(s, min(s + B, len(ro.completion_ids))))
        groups = sorted({r // G for r in rows})
        p_ids, p_mask = pad_left([ro.prompt_ids[i] for i in groups], pad_id)
        c_ids, c_mask = pad_right([ro.completion_ids[r] or [pad_id] for r in rows], pad_id)
        for k, r in enumerate(rows):
            if not ro.completion_ids[r]:
                c_mask[k] = 0
        loss_mask = c_mask.clone().float()
        if mask_truncated:  # DAPO §3.4 overlong filtering
            loss_mask *= torch.tensor([0.0 if ro.truncated[r] else 1.0 for r in rows])[:, None]
        row_tokens = int(c_mask.sum()) + sum(len(ro.prompt_ids[r // G]) for r in rows)
        sampled = None
        if ro.logps is not None:  # asynchronous rollouts: pi_old is the policy that sampled them
            sampled = torch.zeros(c_ids.shape)
            for k, r in enumerate(rows):
                sampled[k, :len(ro.logps[r])] = torch.tensor(ro.logps[r])
        prompt_of = torch.tensor([groups.index(r // G) for r in rows], device=dev)
        out.append({"prompt_ids": p_ids.to(dev), "prompt_mask": p_mask.to(dev), "completion_ids": c_ids.to(dev),
                    "completion_mask": c_mask.to(dev), "rows": prompt_of, "loss_mask": loss_mask.to(dev),
                    "advantages": adv[rows].to(dev), "row_tokens": row_tokens})
        if sampled is not None:
            out[-1]["old_logps"] = sampled.to(dev)
    return out
