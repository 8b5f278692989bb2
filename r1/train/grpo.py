"""`r1 train grpo`: Group Relative Policy Optimization (DeepSeekMath §4; DeepSeek-R1 §2.2, eq. 1-3).

One step: draw prompts -> sample G completions each through the engine (prefix-cached) ->
score them with rule-based rewards -> group-relative advantages -> mu policy updates on the
clipped objective (+ beta * k3 KL to a frozen reference). The math is in grpo_loss.py, the
sampling in rollout.py (rollout_worker.py when asynchronous), the config in grpo_config.py
(re-exported here); this file is the loop.

Modes: "r1_zero" trains a base model on the R1-Zero template (plain text with <think>/<answer>
tags, paper Table 1); "r1" renders prompts with the tokenizer's chat template (R1's ends the
prompt in "<think>\\n"). Knobs carry TRL's names and meanings (GRPOConfig), so a TRL recipe reads
the same here; DAPO's dynamic sampling (which TRL lacks) is `dynamic_sampling`.

Under torchrun each rank samples and scores whole groups (its slice of every draw), so group
advantages need no communication; batch-level statistics (scale_rewards="batch", the DAPO token
count, the logged means) are all-reduced.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
import yaml

import r1
from r1 import rewards as R
from r1.chat.reasoning import prompt_opens_reasoning
from r1.train.checkpoint import MODEL_DIR, CheckpointManager
from r1.train.config import CONFIG_FILE, TrainConfigError, save_config, to_dict, torch_dtype
from r1.train.data import BatchSampler
from r1.train.dist import all_reduce_sum, any_rank, barrier, cleanup, init_distributed, no_sync, wrap_model
from r1.train.grpo_config import (MODES, REWARDS, GRPOConfig, GRPODataConfig, GRPOTrainConfig,  # noqa: F401
                                  build_rewards, render_prompt)
from r1.train.grpo_forward import GroupedLM
from r1.train.grpo_loss import group_advantages, grpo_loss, token_logps
from r1.train.logging import MetricsLogger, TrainProgress
from r1.train.loop import NonFiniteError, export_final, setup_determinism
from r1.train.optim import build_optimizer
from r1.train.rollout import Rollout, generate_groups, micro_batches, rollout_compiler, rollout_seed, score
from r1.train.rollout_worker import SampledAhead
from r1.train.tokenizer_train import tokenizer_files, tokenizer_files_from_dir

# ------------------------------------------------------------------------------ the trainer
class GRPOTrainer:
    """Build from a GRPOTrainConfig; `model`, `tokenizer`, `records` and `reward_funcs` may be
    given directly (tests, notebooks) instead of being loaded from the config."""

    def __init__(self, cfg: GRPOTrainConfig, model=None, tokenizer=None, records: list[dict] | None = None,
                 reward_funcs: list | None = None, reward_weights: list[float] | None = None):
        self.cfg, g = cfg, cfg.grpo
        setup_determinism(cfg.run.seed, cfg.run.deterministic)
        self.dist = init_distributed(cfg.run.device, cfg.dist.backend)
        if self.dist.distributed and cfg.dist.strategy != "ddp":
            raise TrainConfigError("GRPO samples with the engine, which needs the whole policy on each rank: "
                                   "use dist.strategy=ddp")
        dtype = torch_dtype(cfg.run.dtype)
        if model is None or tokenizer is None:
            if not cfg.model.init_from:
                raise TrainConfigError("GRPO starts from a trained model: set model.init_from to its checkpoint "
                                       "folder (a pretrained base for r1_zero, a cold-start SFT model for r1)")
            model = model if model is not None else r1.load_model(cfg.model.init_from, dtype=dtype)
            tokenizer = tokenizer if tokenizer is not None else r1.load_tokenizer(cfg.model.init_from)
        self.policy = model.to(self.dist.device)
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_ids or [0])[0]
        # The reference is the policy as training starts: loaded from init_from (so a resumed run
        # compares against the same reference), or a frozen copy of a model given in memory.
        self.ref = None
        if g.beta > 0:
            self.ref = (r1.load_model(cfg.model.init_from, dtype=dtype).to(self.dist.device) if cfg.model.init_from
                        else copy.deepcopy(self.policy))
            self.ref.eval().requires_grad_(False)

        d = cfg.data
        if records is None:
            records = d.records()
        self.records = records
        self.prompt_texts = [render_prompt(r, d.mode, tokenizer) for r in records]
        add_bos = d.mode == "r1_zero"  # chat templates write their own BOS
        self.prompt_ids = [tokenizer.encode(t, add_special_tokens=add_bos)[-g.max_prompt_length:]
                           for t in self.prompt_texts]
        self.think_in_prompt = prompt_opens_reasoning(self.prompt_texts[0])
        if reward_funcs is None:
            reward_funcs = build_rewards(g.reward_funcs, d.mode, self.think_in_prompt, g.max_completion_length,
                                         d.language)
            reward_weights = g.reward_weights
        self.reward_funcs = list(reward_funcs)
        self.reward_names = [getattr(f, "__name__", f"reward_{i}") for i, f in enumerate(self.reward_funcs)]
        self.reward_weights = torch.tensor(reward_weights or [1.0] * len(self.reward_funcs), dtype=torch.float32)
        if len(self.reward_weights) != len(self.reward_funcs):
            raise TrainConfigError(f"{len(self.reward_weights)} reward weights for {len(self.reward_funcs)} functions")
        # the `accuracy` metric: the task's grader, whether or not it is one of the rewards
        self.accuracy = (R.make_accuracy_reward(self.think_in_prompt)
                         if records and "answer" in records[0] and "task" in records[0] else None)

        if g.async_rollouts and self.dist.device.type != "cpu":
            raise TrainConfigError(f"grpo.async_rollouts runs the sampler in a second CPU process; the policy is on "
                                   f"{self.dist.device}: set grpo.async_rollouts=false")
        # asynchronous rollouts' state; it also carries a rollout restored from an async checkpoint
        rows = g.prompts_per_rank * g.num_generations  # a draw's samples: the most rows a decode step has
        self.ahead = SampledAhead(self.policy, tokenizer, self.records, g.rollout_threads,
                                  rows if g.compile_rollouts else 0)
        # grpo.compile_rollouts, synchronous: this process's rollouts decode through one CompiledDecode
        # (asynchronous: the worker makes its own). Nothing compiles before the first decode step.
        self.compiled = (rollout_compiler(self.policy, rows) if g.compile_rollouts and not g.async_rollouts
                         else None)
        self.sampler = BatchSampler([len(p) for p in self.prompt_ids], g.prompts_per_rank * self.dist.world_size,
                                    seed=cfg.run.seed)
        self._build_optimizer()
        self.out_dir = Path(cfg.run.out_dir)
        self.ckpt = CheckpointManager(self.out_dir / "checkpoints", cfg.run.keep_last, self.dist)
        self.step = 0
        resumed = self._maybe_resume()
        # DDP wraps the two-pass forward (prompts once, then completions), so it sees one forward per backward
        self.model = wrap_model(GroupedLM(self.policy), self.dist, cfg.dist.strategy)
        self.logger = MetricsLogger(self.out_dir, enabled=self.dist.is_main, resume_step=self.step if resumed else None)

    # ----- setup helpers
    def _build_optimizer(self) -> None:
        total = self.cfg.run.max_steps * self.cfg.grpo.num_iterations  # one scheduler step per update
        self.optimizer, self.scheduler = build_optimizer(self.policy, self.cfg.optim, total)

    def _maybe_resume(self) -> bool:
        if not self.cfg.run.resume:
            return False
        self.ckpt.remove_incomplete()
        barrier(self.dist)
        latest = self.ckpt.latest() if self.cfg.run.resume else None
        if latest is None:
            return False
        state = self.ckpt.restore(latest, self.policy, self.optimizer, self.scheduler)
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["data"]["sampler"])
        # asynchronous run: the next step's rollout, sampled before the save
        self.ahead.restore((self.ckpt.read_rank_state(latest) or {}).get("next_rollout"))
        return True

    def _model_files(self) -> dict[str, str]:
        """The tokenizer files, so every checkpoint is a runnable model folder."""
        src = self.cfg.model.init_from
        files = tokenizer_files_from_dir(src) if src and Path(src).is_dir() else {}
        return files or tokenizer_files(self.tokenizer)

    # ----- one step
    def _rollout(self, step: int) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
        """This rank's groups for the step, scored; with dynamic sampling, only groups whose rewards
        differ, drawing again (all ranks together, so the prompt order stays shared) until each
        rank has its quota or max_sampling_rounds is reached."""
        g, P = self.cfg.grpo, self.cfg.grpo.prompts_per_rank
        kept: list[tuple[Rollout, torch.Tensor]] = []
        spare: list[tuple[Rollout, torch.Tensor]] = []
        n_kept, groups_seen, zero_groups, draws = 0, 0, 0, 0
        gen_tokens, gen_s, score_s, cached, wait_s = 0, 0.0, 0.0, 0, 0.0
        for draw in range(g.max_sampling_rounds if g.dynamic_sampling else 1):
            draws += 1
            if n_kept < P:
                t0 = time.perf_counter()
                idx, ro = self._sample(step, draw)
                wait_s += time.perf_counter() - t0
                gen_tokens, gen_s = gen_tokens + ro.gen_tokens, gen_s + ro.gen_seconds
                cached += ro.cached_prompt_tokens
                t0 = time.perf_counter()
                per_func = score(ro, self.reward_funcs, [self.prompt_texts[i] for i in idx])
                score_s += time.perf_counter() - t0
                total = self._total_reward(per_func)
                zero = group_advantages(total, g.num_generations).group_std_zero
                groups_seen, zero_groups = groups_seen + len(idx), zero_groups + int(zero.sum())
                G = g.num_generations
                for gi in range(len(idx)):
                    part = (ro.select([gi]), per_func[gi * G:(gi + 1) * G])
                    if g.dynamic_sampling and bool(zero[gi]):
                        spare.append(part)
                    elif n_kept < P:
                        kept.append(part)
                        n_kept += 1
            if not g.dynamic_sampling or not any_rank(n_kept < P, self.dist):
                break
        short = P - n_kept
        # Still short after the last draw: top up with zero-variance groups (advantage 0, so no
        # policy gradient) to keep every rank's batch the same shape for DDP.
        kept += spare[:short]
        rollout = Rollout.concat([r for r, _ in kept])
        per_func = torch.cat([s for _, s in kept])
        info = {"gen_tokens": gen_tokens, "gen_s": gen_s, "wait_s": wait_s, "score_s": score_s, "cached": cached,
                "groups_seen": groups_seen, "zero_groups": zero_groups, "draws": draws, "short": short}
        return rollout, per_func, info

    def _draw(self) -> list[int]:
        """This rank's prompt indices of the next draw (every rank draws, so the order stays shared)."""
        P, rank = self.cfg.grpo.prompts_per_rank, self.dist.rank
        return self.sampler.next()[rank * P:(rank + 1) * P]

    def _sample_kwargs(self, step: int, draw: int, idx: list[int]) -> dict[str, Any]:
        g = self.cfg.grpo
        return dict(prompt_ids=[self.prompt_ids[i] for i in idx], num_generations=g.num_generations,
                    max_completion_length=g.max_completion_length, temperature=g.temperature, top_p=g.top_p,
                    top_k=g.top_k, seeds=[rollout_seed(self.cfg.run.seed, step, draw, i) for i in idx])

    def _sample(self, step: int, draw: int) -> tuple[list[int], Rollout]:
        """Prompt indices and their sampled groups for (step, draw). Synchronous: drawn and sampled
        now. Asynchronous: the worker sampled them during the previous step (waited for here), and
        the next step's rollout is handed to it before this step trains -- with the weights as
        they are now, so it lags this step's update by one."""
        got = self.ahead.take()  # sampled ahead, or restored from a checkpoint
        if got is None:
            idx = self._draw()
            kwargs = self._sample_kwargs(step, draw, idx)
            if self.cfg.grpo.async_rollouts:  # the first step: nothing was sampled ahead
                self.ahead.submit(idx, **kwargs)
                got = self.ahead.take()
            else:
                got = idx, generate_groups(self.policy, self.tokenizer, records=[self.records[i] for i in idx],
                                           compiled=self.compiled, **kwargs)
        if self.cfg.grpo.async_rollouts:  # also after the last step: its checkpoint then holds the
            nxt = self._draw()  # rollout a longer (resumed) run would continue with
            self.ahead.submit(nxt, **self._sample_kwargs(step + 1, 0, nxt))
        return got

    def drain(self) -> None:
        """Wait for the rollout the worker is sampling ahead, so the worker sits idle (before
        something else needs the CPU)."""
        self.ahead.drain()

    def close(self) -> None:
        """Stop the rollout worker (asynchronous rollouts)."""
        self.ahead.close()

    def _total_reward(self, per_func: torch.Tensor) -> torch.Tensor:
        # TRL: weighted nansum over functions; a completion no function applies to is NaN (left out)
        total = (per_func * self.reward_weights[None]).nansum(1)
        return total.masked_fill(torch.isnan(per_func).all(1), float("nan"))

    def _micro_batches(self, ro: Rollout, adv: torch.Tensor) -> list[dict[str, Any]]:
        g = self.cfg.grpo
        return micro_batches(ro, adv, g.per_device_train_batch_size, self.pad_id, g.mask_truncated_completions,
                             self.dist.device)

    def _logps(self, model, mb: dict[str, Any], with_entropy: bool = False):
        """log pi(token) (b, C) of every completion token, 0 at padding (and, with_entropy, each
        position's entropy, detached). The forward computes logits only where a real token is
        predicted (GroupedLM packed=True); they are scattered back to (b, C) here."""
        logits, where = model(mb["prompt_ids"], mb["prompt_mask"], mb["completion_ids"], mb["completion_mask"],
                              mb["rows"], packed=True, buckets=self.cfg.grpo.length_buckets)  # (n, V), (n,)
        targets = mb["completion_ids"].reshape(-1).index_select(0, where)
        out = token_logps(logits, targets, self.cfg.grpo.temperature, with_entropy=with_entropy)
        b, C = mb["completion_ids"].shape
        scatter = lambda x: x.new_zeros(b * C).index_copy(0, where, x).view(b, C)  # noqa: E731
        return tuple(map(scatter, out)) if with_entropy else scatter(out)

    @torch.no_grad()
    def _ref_logps(self, mb: dict[str, Any]) -> torch.Tensor:
        return self._logps(GroupedLM(self.ref), mb)

    def train_step(self) -> dict[str, float]:
        """One generation batch and its mu policy updates; returns the logged metrics."""
        g, cfg = self.cfg.grpo, self.cfg
        step = self.step + 1
        ro, per_func, info = self._rollout(step)
        total = self._total_reward(per_func)
        if g.scale_rewards == "batch" and self.dist.distributed:
            # the std over the whole batch needs every rank's rewards; gather, compute, keep ours
            parts = [torch.empty_like(total) for _ in range(self.dist.world_size)]
            torch.distributed.all_gather(parts, total)
            adv = group_advantages(torch.cat(parts), g.num_generations, "batch").advantages
            adv = adv.view(self.dist.world_size, -1)[self.dist.rank]
        else:
            adv = group_advantages(total, g.num_generations, g.scale_rewards).advantages
        mbs = self._micro_batches(ro, adv)

        t_train = time.perf_counter()
        if self.ref is not None:
            for mb in mbs:
                mb["ref_logps"] = self._ref_logps(mb)
        tokens = torch.tensor([float(sum(mb["loss_mask"].sum() for mb in mbs))])
        num_items = float(all_reduce_sum(tokens, self.dist)) / self.dist.world_size
        sums = {"loss": 0.0, "tokens": 0.0, "clip_low": 0.0, "clip_high": 0.0, "kl": 0.0, "entropy": 0.0,
                "entropy_tokens": 0.0}
        train_tokens, grad_norm = 0, 0.0
        self.model.train()
        for it in range(g.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            for k, mb in enumerate(mbs):
                with no_sync(self.model, k == len(mbs) - 1):
                    logps, ent = self._logps(self.model, mb, with_entropy=True)
                    if it == 0 and g.num_iterations > 1 and ro.logps is None:
                        # pi_old is the policy before this batch's first update -- which is the
                        # policy of iteration 0 itself (no update happens until all its
                        # micro-batches are done), so its log-probs need no extra forward.
                        # (Asynchronous rollouts carry the older sampling policy's instead.)
                        mb["old_logps"] = logps.detach()
                    off_policy = it > 0 or ro.logps is not None
                    out = grpo_loss(logps, mb["advantages"], mb["loss_mask"], loss_type=g.loss_type,
                                    old_logps=mb["old_logps"] if off_policy else None, epsilon=g.epsilon,
                                    epsilon_high=g.epsilon_high, beta=g.beta, ref_logps=mb.get("ref_logps"),
                                    max_completion_length=g.max_completion_length, num_items_in_batch=num_items,
                                    grad_accum_steps=len(mbs))
                    out.loss.backward()
                sums["loss"] += float(out.loss.detach())
                for key in ("tokens", "clip_low", "clip_high", "kl"):
                    sums[key] += getattr(out, key)
                # over every sampled token, also those a mask keeps out of the loss
                sums["entropy"] += float((ent * mb["completion_mask"]).sum())
                sums["entropy_tokens"] += float(mb["completion_mask"].sum())
                train_tokens += mb["row_tokens"]
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), clip)
            if any_rank(not torch.isfinite(norm).item(), self.dist):
                self.optimizer.zero_grad(set_to_none=True)
                last = self.ckpt.latest()
                raise NonFiniteError(f"step {step}: gradient norm is {float(norm)}; the update was NOT applied and "
                                     f"training stopped (last good checkpoint: {last or 'none yet'}). Lower optim.lr, "
                                     "keep optim.grad_clip on, or check the rewards; resume with --resume.")
            grad_norm = float(norm)
            self.optimizer.step()
            self.scheduler.step()
        train_s = time.perf_counter() - t_train
        self.step = step
        return self._metrics(ro, per_func, total, info, sums, train_tokens, train_s, grad_norm)

    def _metrics(self, ro: Rollout, per_func: torch.Tensor, total: torch.Tensor, info: dict, sums: dict,
                 train_tokens: int, train_s: float, grad_norm: float) -> dict[str, float]:
        """Means over all ranks: every quantity is reduced as a (sum, count) pair."""
        g = self.cfg.grpo
        acc: list = []
        if "accuracy_reward" in self.reward_names:  # already graded: reuse, do not grade twice
            acc = per_func[:, self.reward_names.index("accuracy_reward")].tolist()
            acc = [None if a != a else a for a in acc]
        elif self.accuracy is not None:
            rec_cols = {k: [ro.records[i // g.num_generations].get(k) for i in range(len(ro.texts))]
                        for k in ro.records[0] if k != "prompt"}
            acc = self.accuracy([None] * len(ro.texts), ro.texts, **rec_cols)
        lengths = torch.tensor([float(len(c)) for c in ro.completion_ids])
        ok = ~torch.isnan(per_func)
        vec = torch.cat([
            torch.nan_to_num(per_func, nan=0.0).sum(0), ok.sum(0).float(),  # per-function sums, counts
            torch.tensor([torch.nan_to_num(total, nan=0.0).sum(), (~torch.isnan(total)).sum(),
                          torch.nan_to_num(total, nan=0.0).pow(2).sum(),
                          sum(a for a in acc if a is not None), sum(a is not None for a in acc),
                          lengths.sum(), len(lengths),
                          sum(ro.truncated), info["groups_seen"], info["zero_groups"], info["short"],
                          sums["tokens"], sums["clip_low"], sums["clip_high"], sums["kl"], sums["entropy"],
                          sums["entropy_tokens"], sums["loss"],
                          info["gen_tokens"], info["gen_s"], train_tokens, train_s, info["score_s"], info["cached"],
                          info["wait_s"]],
                         dtype=torch.float64)])
        vec = all_reduce_sum(vec.to(self.dist.device), self.dist).cpu()
        F = per_func.shape[1]
        fs, fc, rest = vec[:F], vec[F:2 * F], vec[2 * F:].tolist()
        (r_sum, r_n, r_sq, a_sum, a_n, l_sum, l_n, trunc, seen, zero, short, tok, lo, hi, kl, ent, ent_n, loss,
         gtok, gs, ttok, ts, ss, cached, ws) = rest
        W = self.dist.world_size
        m: dict[str, float] = {f"rewards/{n}/mean": float(fs[i] / fc[i]) if fc[i] else float("nan")
                               for i, n in enumerate(self.reward_names)}
        mean = r_sum / max(r_n, 1)
        m.update({
            "reward": mean, "reward_std": max(0.0, r_sq / max(r_n, 1) - mean ** 2) ** 0.5,
            "accuracy": a_sum / a_n if a_n else float("nan"),
            "completions/mean_length": l_sum / max(l_n, 1), "completions/clipped_ratio": trunc / max(l_n, 1),
            "frac_reward_zero_std": zero / max(seen, 1),  # over every group sampled this step
            "clip_ratio/low_mean": lo / max(tok, 1), "clip_ratio/high_mean": hi / max(tok, 1),
            "clip_ratio/region_mean": (lo + hi) / max(tok, 1),
            "entropy": ent / max(ent_n, 1), "loss": loss / (W * g.num_iterations), "grad_norm": grad_norm,
            "lr": self.scheduler.get_last_lr()[0],
            # rates over all ranks: tokens summed, time of the slowest rank approximated by the mean
            "rollout/tokens_per_s": gtok / max(gs / W, 1e-9), "train/tokens_per_s": ttok / max(ts / W, 1e-9),
            "time/rollout_s": gs / W, "time/reward_s": ss / W, "time/train_s": ts / W,
            # the part of the rollout the step waited for: all of it when synchronous, only what
            # sampling took beyond the previous step's training when asynchronous
            "time/rollout_wait_s": ws / W,
            "rollout/prefix_cached_tokens": cached,
        })
        if g.beta > 0:
            m["kl"] = kl / max(tok, 1)
        if g.dynamic_sampling:
            m["dynamic_sampling/groups_sampled"] = seen
            m["dynamic_sampling/short_groups"] = short
        return m

    # ----- the loop
    def save(self) -> Path:
        # Asynchronous rollouts: the next step's rollout, sampled by weights older than the ones
        # saved here, goes into the checkpoint -- a resumed run could not sample it again.
        self.ahead.drain()
        ahead = self.ahead.state()
        rank_state = {"next_rollout": ahead} if ahead else None
        # the bare policy: its parameter names are the checkpoint's (the DDP / GroupedLM wrappers add prefixes)
        return self.ckpt.save(self.step, self.policy, self.optimizer, self.scheduler,
                              data_state={"sampler": self.sampler.state_dict()}, model_files=self._model_files(),
                              config_yaml=yaml.safe_dump(to_dict(self.cfg), sort_keys=False), rank_state=rank_state)

    def train(self) -> list[dict]:
        run, history = self.cfg.run, []
        if self.dist.is_main:
            save_config(self.cfg, self.out_dir / CONFIG_FILE)
        show = ("reward", "accuracy", "completions/mean_length")
        try:
            with TrainProgress(run.max_steps, self.step, enabled=run.progress and self.dist.is_main,
                               description="grpo", show=show, plain_every=run.log_every) as bar:
                while self.step < run.max_steps:
                    metrics = self.train_step()
                    if self.step % run.log_every == 0 or self.step == run.max_steps:
                        history.append(self.logger.log(self.step, **metrics))
                    bar.update(self.step, metrics)
                    if (run.save_every and self.step % run.save_every == 0) or self.step == run.max_steps:
                        self.save()
        finally:
            self.logger.close()
            self.close()
        if self.dist.is_main:
            export_final(self.ckpt.latest(), self.out_dir / MODEL_DIR)  # RUN/model: what `r1 run` loads
        barrier(self.dist)
        return history


def train_grpo(cfg: GRPOTrainConfig) -> list[dict]:
    """Run GRPO as configured (the `r1 train grpo` entry point); returns the logged records."""
    trainer = GRPOTrainer(cfg)
    try:
        return trainer.train()
    finally:
        cleanup(trainer.dist)


# The `r1 train` contract (r1/train/cli.py): a config class and train(cfg).
CONFIG = GRPOTrainConfig
train = train_grpo
DESCRIPTION = "GRPO (R1-Zero and R1 modes): sampled groups, rule-based rewards, clipped objective + k3 KL"

__all__ = ["GRPOConfig", "GRPODataConfig", "GRPOTrainConfig", "GRPOTrainer", "build_rewards", "render_prompt",
           "train_grpo", "MODES", "REWARDS"]
