"""The engine: `LLMEngine` (add_request / step / abort, for servers and trainers) and `LLM`
(batch `generate` and streaming, for scripts), in the spirit of vLLM / nano-vllm.

step() = schedule -> run -> sample -> bookkeeping; each part lives in its own module.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from r1.engine.compiled import CompiledDecode, compile_decode
from r1.engine.kv_cache import BlockManager, PagedKVCache
from r1.engine.linear import use_engine_linears
from r1.engine.moe import use_engine_moe
from r1.engine.paged_attention import native_unavailable
from r1.engine.runner import ModelRunner
from r1.engine.sampling import SamplingParams, apply_penalties, sample, token_logprobs
from r1.engine.speculative import draw, target_probs, verify
from r1.engine.scheduler import Scheduler
from r1.engine.sequence import Sequence
from r1.errors import R1Error, bad_file
from r1.model.base import CausalLM

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    max_num_seqs: int = 64  # sequences decoded together
    max_num_batched_tokens: int = 1024  # prefill tokens per step (longer prompts are chunked)
    block_size: int = 16
    num_blocks: int = 0  # 0 = from kv_cache_gb
    kv_cache_gb: float = 0.5
    kv_cache_dtype: str = "auto"  # "auto" (model dtype) | "int8"
    prefix_caching: bool = True
    max_model_len: int = 0  # 0 = the model's max_position_embeddings
    max_waiting: int = 0  # 0 = unbounded; servers set a bound and answer 429 beyond it
    # MTP drafting: True (models with MTP modules only), False, or "auto" (the turbo profile's):
    # draft where the model has MTP modules unless single-row steps are compiled on CPU. Verify
    # steps (two tokens a row) run eagerly, and there a compiled plain step beat them even at ~99%
    # acceptance (bench/mtp.py, docs/bench-mtp.md).
    speculative: bool | str = False
    # A draft costs a second token per row in the main pass plus the MTP pass; when few are
    # accepted (an untrained MTP head, a model fine-tuned away from its head) that is pure loss.
    # After spec_probe_drafts drafts, drafting stops for good if under spec_min_acceptance of
    # them were accepted. Outputs keep their distribution either way (greedy: identical).
    spec_min_acceptance: float = 0.3
    spec_probe_drafts: int = 64  # 0 = never stop drafting
    # Single-row decode steps through torch.compile (r1/engine/compiled.py): 2.2-2.7x faster
    # batch-1 decode on SmolLM2 (CPU, measured), at the price of compiling on the first decode
    # steps (17-54 s there). compile_blocker lists the models that stay eager.
    compile: bool = False
    # What SamplingParams.logprobs reports: "raw" = the model's log-softmax (OpenAI's meaning;
    # penalties and logits processors included); "processed" = also divided by the request's
    # temperature (1 for greedy), before top-k/top-p/min-p -- the sampling policy's own log-probs,
    # which GRPO's importance ratio needs when it trains on samples of older weights
    # (r1/train/rollout_worker.py). vLLM calls these raw_logprobs / processed_logprobs.
    logprobs_mode: str = "raw"
    # Decode attention of GQA models: "auto" reads the paged cache in place with a small C kernel
    # (r1/engine/paged_attention.py; CPU, fp32 cache, one torch thread, a C compiler present),
    # else gathers each row's past and runs SDPA; "torch" always does the latter.
    decode_attention: str = "auto"

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.spec_min_acceptance <= 1 or self.spec_probe_drafts < 0:
            raise ValueError(f"spec_min_acceptance must be in [0, 1] and spec_probe_drafts >= 0, got "
                             f"{self.spec_min_acceptance}, {self.spec_probe_drafts}")
        if self.kv_cache_dtype not in ("auto", "int8"):
            raise ValueError(f"kv_cache_dtype {self.kv_cache_dtype!r}: choose 'auto' or 'int8'")
        if self.logprobs_mode not in ("raw", "processed"):
            raise ValueError(f"logprobs_mode {self.logprobs_mode!r}: choose 'raw' or 'processed'")
        if self.speculative not in (True, False, "auto"):
            raise ValueError(f"speculative {self.speculative!r}: choose True, False or 'auto'")
        if self.decode_attention not in ("auto", "torch"):
            raise ValueError(f"decode_attention {self.decode_attention!r}: choose 'auto' or 'torch'")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None  # None while running; "stop" | "length" | "abort" | "error" (see error)
    text_delta: str = ""
    token_ids_delta: list[int] = field(default_factory=list)
    logprobs: list[dict] | None = None
    logprobs_delta: list[dict] | None = None
    reasoning_tokens: int = 0
    stop_token_id: int | None = None  # the eos / stop token that ended it (not in token_ids)
    error: str | None = None  # what went wrong when finish_reason is "error"


class ModelOutputError(R1Error, ValueError):
    """The model's logits were not finite: a broken checkpoint or config, never an empty answer."""


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    num_cached_tokens: int = 0
    arrival_time: float = 0.0
    first_token_time: float | None = None


@dataclass
class _Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    seqs: list[Sequence]


class QueueFull(RuntimeError):
    """The waiting queue is at its bound: shed load (HTTP 429) instead of growing without limit."""


class LLMEngine:
    def __init__(self, model: CausalLM, tokenizer, config: EngineConfig | None = None,
                 compiled: CompiledDecode | None = None):
        """compiled: an existing CompiledDecode of this model to reuse (its graphs are already
        compiled); otherwise config.compile makes one."""
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = config = config or EngineConfig()
        mcfg = model.config
        self.max_model_len = min(config.max_model_len or mcfg.max_position_embeddings, mcfg.max_position_embeddings)
        num_blocks = config.num_blocks or self._blocks_for(config.kv_cache_gb)
        device = model.device
        self.blocks = BlockManager(num_blocks, config.block_size, config.prefix_caching)
        self.cache = PagedKVCache(num_blocks, config.block_size, device, config.kv_cache_dtype)
        self.scheduler = Scheduler(self.blocks, config.max_num_seqs, config.max_num_batched_tokens)
        use_engine_linears(model)  # oneDNN-packed fp32 weights for inference (r1/engine/linear.py)
        use_engine_moe(model)  # small batches: all experts in two matmuls (r1/engine/moe.py)
        if compiled is not None and compiled.model is not model:
            raise ValueError("compiled= was made for another model")
        self.compile_skipped = None  # why compile=True was not honoured
        if compiled is None and config.compile:
            compiled, self.compile_skipped = compile_decode(model)  # the single-row step (see CompiledDecode)
            if self.compile_skipped:
                log.info("compile=True ignored, decoding eagerly: %s", self.compile_skipped)
        in_place = (config.decode_attention == "auto" and device.type == "cpu" and config.kv_cache_dtype == "auto"
                    and model.dtype == torch.float32 and native_unavailable() is None)
        self.runner = ModelRunner(model, self.cache, compiled, in_place_attention=in_place)
        self.requests: dict[str, _Request] = {}
        self._seq_ids = itertools.count()
        self.eos_ids = set(getattr(tokenizer, "eos_token_ids", None) or [])
        close = tokenizer.encode(THINK_CLOSE) if tokenizer is not None else []
        self.think_close_ids = close
        self.stats = {"prompt_tokens": 0, "generation_tokens": 0, "spec_drafted": 0, "spec_accepted": 0}
        has_mtp = bool(getattr(model, "mtp", None))
        if config.speculative is True and not has_mtp:
            raise ValueError("speculative decoding needs a model with MTP modules (num_nextn_predict_layers > 0)")
        self.spec_skipped = None  # why speculative="auto" does not draft
        if config.speculative == "auto":
            if not has_mtp:
                self.spec_skipped = "the model has no MTP modules"
            elif compiled is not None and device.type == "cpu":
                self.spec_skipped = "single-row steps are compiled (faster on CPU than eager verify steps)"
        self.speculative = has_mtp and config.speculative is not False and self.spec_skipped is None

    def _blocks_for(self, gb: float) -> int:
        from r1.config import count_params

        r = count_params(self.model.config)
        per_token = r.kv_elems_per_token_layer * (r.num_layers + self.model.config.num_nextn_predict_layers)
        bytes_per = 1 if self.config.kv_cache_dtype == "int8" else self.model.dtype.itemsize
        return max(1, int(gb * 2**30 // (per_token * bytes_per * self.config.block_size)))

    # ------------------------------------------------------------------ requests
    def add_request(self, request_id: str, prompt: str | list[int], params: SamplingParams | None = None,
                    think_in_prompt: bool | None = None) -> None:
        """Queue a request. Anything wrong with it raises ValueError here, before it can touch
        the running batch."""
        params = params or SamplingParams()
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        if self.config.max_waiting and len(self.scheduler.waiting) >= self.config.max_waiting:
            raise QueueFull(f"{len(self.scheduler.waiting)} requests are waiting (limit {self.config.max_waiting})")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        vocab = self.model.config.vocab_size
        if not ids:
            raise ValueError("the prompt is empty")
        if min(ids) < 0 or max(ids) >= vocab:
            raise ValueError(f"prompt has token ids outside the vocabulary [0, {vocab})")
        if len(ids) + params.max_tokens > self.max_model_len:
            raise ValueError(f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) = "
                             f"{len(ids) + params.max_tokens} exceeds the context length of {self.max_model_len} tokens")
        need = self.blocks.blocks_needed(len(ids) + params.max_tokens)
        if need > len(self.blocks.blocks):
            raise ValueError(f"request needs {need} KV blocks but the whole cache has {len(self.blocks.blocks)}; "
                             "raise kv_cache_gb or lower max_tokens")
        if params.stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer")
        if think_in_prompt is None:
            think_in_prompt = self._opens_reasoning(ids)
        req = _Request(request_id, ids, params, [])
        for i in range(params.n):
            gen = None
            if params.seed is not None:
                gen = torch.Generator(device=self.runner.device).manual_seed(params.seed + i)
            seq = Sequence(next(self._seq_ids), request_id, i, list(ids), params, generator=gen,
                           in_reasoning=think_in_prompt)
            if self.tokenizer is not None:
                seq.detok = self.tokenizer.detokenizer(skip_special_tokens=params.skip_special_tokens, prompt_ids=ids)
            req.seqs.append(seq)
            self.scheduler.add(seq)
        self.requests[request_id] = req
        self.stats["prompt_tokens"] += len(ids)

    def _opens_reasoning(self, ids: list[int]) -> bool:
        if self.tokenizer is None:
            return False
        tail = self.tokenizer.decode(ids[-4:], skip_special_tokens=False)
        return tail.rstrip().endswith(THINK_OPEN)

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its blocks at once (a client went away)."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return False
        for seq in req.seqs:
            if not seq.is_finished:
                seq.finish_reason = "abort"
                self.scheduler.finish(seq)
        return True

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # ------------------------------------------------------------------ the step
    def step(self) -> list[RequestOutput]:
        """Schedule, run the model once (plus the MTP module when speculating), sample, account."""
        spec = self.speculative
        batch = self.scheduler.schedule(lookahead=2 if spec else 1)
        if batch is None:
            return []
        rows = []  # (seq, start, n real tokens, draft or None)
        for seq, st, e in zip(batch.seqs, batch.starts, batch.ends):
            draft = seq.draft if (spec and e == len(seq) and not batch.is_prefill) else None
            rows.append((seq, st, e - st, draft))
        tokens = [s.token_slice(st, st + n) + ([d] if d is not None else []) for s, st, n, d in rows]
        at = [[n - 1, n if d is not None else n - 1] if spec else [n - 1] for _, _, n, d in rows]
        out = self.runner.run(batch.seqs, batch.starts, tokens, at, return_hidden=spec)
        logits, hidden = out if spec else (out, None)  # logits (b, m, V)
        touched: dict[str, _Request] = {}
        sampled = [i for i, (s, st, n, _) in enumerate(rows) if st + n == len(s)]
        # a decode step samples every row: its logits need no gather
        lg = logits[:, 0] if len(sampled) == len(rows) else logits[sampled, 0]
        # NaN/Inf logits (a broken checkpoint or config) end their sequence with an error rather than
        # sampling garbage or nothing. A NaN or Inf anywhere makes its row's sum NaN/Inf: one fast
        # reduction a step (isfinite over the whole (b, V) block is far slower on CPU: docs/manual.md)
        broken: set[int] = set()
        row_ok = torch.isfinite(lg.float().sum(-1)) if sampled else None
        if sampled and not bool(row_ok.all()):
            ok = row_ok.tolist()
            broken = {sampled[j] for j, good in enumerate(ok) if not good}
            keep = [j for j, good in enumerate(ok) if good]
            sampled, lg = [sampled[j] for j in keep], lg[keep]
        first = self._sample_rows([rows[i][0] for i in sampled], lg) if sampled else []
        first_of = dict(zip(sampled, first))  # row -> (token, logprob entry)
        now = time.monotonic()
        mtp_rows = []  # (seq, start, n computed this step)
        for i, (seq, st, n, draft) in enumerate(rows):
            if i in broken:
                seq.error = (f"the model's logits are not finite (NaN or Inf) at position {st + n}: its weights "
                             "or config are broken (rope_theta, rms_norm_eps, scaling factors, the file itself)")
                self._finish(seq, "error")
                if seq.request_id in self.requests:
                    touched[seq.request_id] = self.requests[seq.request_id]
                continue
            if i not in first_of:  # a partial prefill chunk: nothing to sample yet
                seq.num_computed = st + n
                self.blocks.mark_computed(seq)
                mtp_rows.append((i, seq, st, n))
                continue
            tok, lp = first_of[i]
            accepted = False
            if draft is not None:
                p = target_probs(logits[i, 0], seq.params)
                tok, accepted = verify(p, seq.draft_q, draft, seq.generator)
                self.stats["spec_drafted"] += 1
                self.stats["spec_accepted"] += int(accepted)
                lp = self._lp(seq, logits[i, 0], tok)
            seq.draft = seq.draft_q = None
            seq.num_computed = st + n + int(accepted)
            if seq.first_token_time is None:
                seq.first_token_time = now
            self._emit(seq, tok, lp)
            if accepted and not seq.is_finished:  # the draft's own logits give one more token
                probs = target_probs(logits[i, 1], seq.params)
                t2 = draw(probs, seq.generator)
                self._emit(seq, t2, self._lp(seq, logits[i, 1], t2))
            if not seq.is_finished:  # after the tokens are appended: an accepted draft is one of them
                self.blocks.mark_computed(seq)
            if seq.request_id in self.requests:
                touched[seq.request_id] = self.requests[seq.request_id]
            if spec and not seq.is_finished:
                mtp_rows.append((i, seq, st, n + int(accepted)))
        if spec and mtp_rows:
            self._draft(mtp_rows, hidden)
        if spec:
            self._judge_speculation()
        return [self._output(req) for req in touched.values()
                if req.params.output_kind == "cumulative" or all(q.is_finished for q in req.seqs)]

    def _judge_speculation(self) -> None:
        """Stop drafting for good once enough drafts show it does not pay (see EngineConfig).
        For good, not per step: the MTP module's KV must cover every position it drafts from."""
        n, probe = self.stats["spec_drafted"], self.config.spec_probe_drafts
        if probe and n >= probe and self.stats["spec_accepted"] < self.config.spec_min_acceptance * n:
            self.speculative = False
            self.stats["spec_stopped_after"] = n
            for req in self.requests.values():
                for seq in req.seqs:
                    seq.draft = seq.draft_q = None

    def _sample_rows(self, seqs: list[Sequence], logits: torch.Tensor) -> list[tuple[int, dict | None]]:
        if any(s.params.penalized for s in seqs):
            logits = torch.cat([apply_penalties(logits[i : i + 1], s.params, s.prompt_ids, s.output_ids)
                                for i, s in enumerate(seqs)])
        if any(s.params.logits_processors for s in seqs):
            logits = logits.float().clone()
            for i, s in enumerate(seqs):
                for proc in s.params.logits_processors:
                    logits[i] = proc(s.output_ids, logits[i])
        tokens = sample(logits, [s.params for s in seqs], [s.generator for s in seqs])
        return list(zip(tokens.tolist(), self._logprobs(seqs, logits, tokens)))

    def _logprobs(self, seqs: list[Sequence], logits: torch.Tensor, tokens: torch.Tensor) -> list[dict | None]:
        """logits (b, V), tokens (b,) -> per row the sampled token's logprob entry, or None where
        the request did not ask for logprobs; one batched log-softmax for all rows that did."""
        out: list[dict | None] = [None] * len(seqs)
        rows = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
        if not rows:
            return out
        idx = torch.tensor(rows, device=logits.device)
        lg = logits.index_select(0, idx).float()
        if self.config.logprobs_mode == "processed":
            temp = torch.tensor([seqs[i].params.temperature or 1.0 for i in rows], device=lg.device)
            lg = lg / temp[:, None]
        k = max(seqs[i].params.logprobs for i in rows)
        for i, entry in zip(rows, token_logprobs(lg, tokens.index_select(0, idx), k)):
            out[i] = entry
        return out

    def _lp(self, seq: Sequence, logits: torch.Tensor, tok: int) -> dict | None:
        """One row's entry (speculative steps): logits (V,)."""
        return self._logprobs([seq], logits[None], torch.tensor([tok], device=logits.device))[0]

    def _emit(self, seq: Sequence, sampled: int, lp: dict | None) -> None:
        forced = bool(seq.forced)
        self._append(seq, seq.forced.pop(0) if forced else sampled, lp, forced)

    def _draft(self, mtp_rows, hidden: torch.Tensor) -> None:
        """Run the MTP module over the positions computed this step (its KV must cover every
        position), and keep a draft for the next step from its last position."""
        seqs = [s for _, s, _, _ in mtp_rows]
        starts = [st for _, _, st, _ in mtp_rows]
        next_ids = [s.all_ids[st + 1 : st + n + 1] for _, s, st, n in mtp_rows]
        hs = [hidden[i, :n] for i, _, _, n in mtp_rows]
        logits = self.runner.run_mtp(seqs, starts, next_ids, hs)
        for r, seq in enumerate(seqs):
            # a draft would bypass penalties and logits processors (grammar masks): no drafting then
            if seq.num_computed == len(seq) - 1 and not seq.forced and not seq.params.penalized \
                    and not seq.params.logits_processors:
                seq.draft_q = target_probs(logits[r], seq.params)
                seq.draft = draw(seq.draft_q, seq.generator)

    def _append(self, seq: Sequence, tok: int, lp: dict | None, forced: bool = False) -> None:
        p = seq.params
        if lp is not None:
            k = p.logprobs or 0
            seq.logprobs.append(lp if len(lp["top"]) <= k else {**lp, "top": lp["top"][:k]})
        if tok in p.stop_token_ids or (tok in self.eos_ids and not p.ignore_eos):
            seq.stop_token = tok  # ends the text; counted in usage, not part of token_ids
            self._finish(seq, "stop")
            return
        seq.output_ids.append(tok)
        self.stats["generation_tokens"] += 1
        if seq.detok is not None:
            seq.text += seq.detok.step(tok)
        if seq.in_reasoning:
            closed = (len(self.think_close_ids) == 1 and tok == self.think_close_ids[0]) or THINK_CLOSE in seq.text[-64:]
            if closed:
                seq.in_reasoning = False
            elif not forced:  # the forced </think> itself is not reasoning
                seq.reasoning_tokens += 1
                budget = p.thinking_budget
                if budget is not None and seq.reasoning_tokens >= budget and not seq.forced:
                    seq.forced = list(self.think_close_ids)
        if p.stop:
            tail = max(0, len(seq.text) - max(map(len, p.stop)) - 32)
            hits = [(j, s) for s in p.stop if (j := seq.text.find(s, tail)) >= 0]
            if hits:
                j, s = min(hits)
                seq.text = seq.text[: j + (len(s) if p.include_stop_str_in_output else 0)]
                self._finish(seq, "stop", flush=False)  # what the detokenizer holds is past the stop
                return
        if len(seq.output_ids) >= p.max_tokens:
            self._finish(seq, "length")

    def _finish(self, seq: Sequence, reason: str, flush: bool = True) -> None:
        seq.finish_reason = reason
        if flush and seq.detok is not None:
            seq.text += seq.detok.finish()
        self.scheduler.finish(seq)

    def _output(self, req: _Request) -> RequestOutput:
        outs = []
        for seq in req.seqs:
            hold = 0
            if seq.params.stop and not seq.is_finished:  # a stop string may be forming: hold it back
                hold = max(map(len, seq.params.stop)) - 1
            visible = max(seq.emitted_chars, len(seq.text) - hold)
            text_delta = seq.text[seq.emitted_chars : visible]
            seq.emitted_chars = visible
            n = len(seq.output_ids)
            ids_delta = seq.output_ids[seq.emitted_tokens :]
            lp_delta = seq.logprobs[seq.emitted_tokens : n] if seq.params.logprobs is not None else None
            seq.emitted_tokens = n
            outs.append(CompletionOutput(
                seq.index, seq.text[:visible], list(seq.output_ids), seq.finish_reason, text_delta, ids_delta,
                seq.logprobs[:n] if seq.params.logprobs is not None else None, lp_delta, seq.reasoning_tokens,
                seq.stop_token, seq.error))
        finished = all(s.is_finished for s in req.seqs)
        if finished:
            self.requests.pop(req.request_id, None)
        first = [s.first_token_time for s in req.seqs if s.first_token_time is not None]
        return RequestOutput(req.request_id, req.prompt_ids, outs, finished, req.seqs[0].num_cached_prompt,
                             req.seqs[0].arrival, min(first) if first else None)


def _raise_model_error(out: RequestOutput) -> None:
    for o in out.outputs:
        if o.finish_reason == "error":
            raise ModelOutputError(o.error or "the model failed")


class LLM:
    """Offline use: `LLM(path).generate(prompts, SamplingParams(...))`."""

    def __init__(self, model: str | Path | CausalLM, tokenizer=None, dtype: torch.dtype = torch.float32,
                 device: str = "cpu", profile: str = "base", load_progress=None, **engine_config):
        """model: a path (loaded for `profile`: "base" or "turbo") or a loaded CausalLM.
        load_progress(done, total): called as a GGUF file's tensors are placed (a CLI progress bar)."""
        import r1
        from r1.engine.profiles import load_for_profile

        if isinstance(model, (str, Path)):
            if not Path(model).exists():
                raise FileNotFoundError(f"{model}: no such model file or folder")
            with bad_file(model):  # a broken file is one error naming it, whatever its parser raised
                tokenizer = tokenizer or r1.load_tokenizer(model)
                model, overrides = load_for_profile(model, profile, dtype=dtype, device=device,
                                                    progress=load_progress)
            engine_config = {**overrides, **engine_config}
        self.tokenizer = tokenizer
        self.engine = LLMEngine(model, tokenizer, EngineConfig(**engine_config))
        self._ids = itertools.count()

    def generate(self, prompts: str | list[int] | list[str] | list[list[int]],
                 params: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int))
        prompts = [prompts] if single else list(prompts)
        params = params if isinstance(params, list) else [params or SamplingParams()] * len(prompts)
        ids = []
        for prompt, p in zip(prompts, params):
            rid = f"gen-{next(self._ids)}"
            self.engine.add_request(rid, prompt, p)
            ids.append(rid)
        done: dict[str, RequestOutput] = {}
        while len(done) < len(ids):
            for out in self.engine.step():
                if out.finished:
                    done[out.request_id] = out
        for out in done.values():
            _raise_model_error(out)
        return [done[r] for r in ids]

    def stream(self, prompt: str | list[int], params: SamplingParams | None = None) -> Iterator[RequestOutput]:
        """Yield this request's outputs (with text/token deltas) as they come; other requests
        already queued on the engine keep running alongside."""
        rid = f"stream-{next(self._ids)}"
        self.engine.add_request(rid, prompt, params)
        try:
            while True:
                for out in self.engine.step():
                    if out.request_id == rid:
                        _raise_model_error(out)
                        yield out
                        if out.finished:
                            return
        finally:
            self.engine.abort(rid)

    def chat(self, messages: list[dict], params: SamplingParams | None = None) -> RequestOutput:
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.generate([self.tokenizer.encode(prompt)], params)[0]
