"""The language-model training loop shared by pretraining and SFT.

One step = one global batch (batch_size x grad_accum x ranks examples). Losses are sums over
tokens divided by the step's global token counts (all-reduced before the first micro-batch), so
gradient accumulation 1x8 and 8x1, or 2 ranks x B and 1 rank x 2B, compute the same update.
A non-finite loss or gradient stops the run before the optimizer sees it; the last good
checkpoint stays the newest one.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from r1.train.checkpoint import MODEL_DIR, CheckpointManager
from r1.train.config import CONFIG_FILE, ModelSpec, TrainConfigError, save_config, to_dict, torch_dtype
from r1.train.data import Batch, BatchSampler, micro_batches
from r1.train.dist import DistInfo, all_reduce_sum, any_rank, barrier, init_distributed, no_sync, wrap_model
from r1.train.fp8 import enable_fp8
from r1.train.logging import MetricsLogger, TrainProgress
from r1.train.losses import LossConfig, RouterStats, balance_loss_sum, gate_label, mtp_labels, token_ce_sum, \
    update_expert_bias
from r1.train.optim import build_optimizer


class NonFiniteError(RuntimeError):
    """A step produced a NaN/Inf loss or gradient; it was not applied."""


def setup_determinism(seed: int, deterministic: bool) -> None:
    """Seed python and torch; with `deterministic`, switch torch's deterministic algorithms on
    (process-wide and left on: a process that runs one training job; see `seeded` otherwise)."""
    import random

    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool):
    """Seed python and torch for a run; with `deterministic`, torch's deterministic algorithms for
    the duration of the run only (the flag is process-wide, so it is restored afterwards)."""
    import random

    random.seed(seed)
    torch.manual_seed(seed)
    before = torch.are_deterministic_algorithms_enabled()
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def build_train_model(spec: ModelSpec, tokenizer, seed: int, device: torch.device) -> nn.Module:
    """A model to train: loaded from spec.init_from, or a fresh preset sized to the tokenizer and
    initialized from `seed` (the same weights on every rank, without touching the global RNG)."""
    import r1
    from r1.config import preset
    from r1.model import build_model

    if spec.init_from:
        model = r1.load_model(spec.init_from, device=device)
        if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(f"{spec.init_from}: vocab_size {model.config.vocab_size} is smaller than its tokenizer's "
                             f"{tokenizer.vocab_size}")
    else:
        kw = dict(spec.overrides)
        if tokenizer is not None:
            kw.update(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        model = build_model(preset(spec.preset, **kw), device=device)
        model.init_weights(spec.init_std, generator=torch.Generator(device=device).manual_seed(seed))
    model.train()
    return model


class LossModule(nn.Module):
    """The whole objective in one forward(), so DDP/FSDP see every parameter it uses (the MTP
    modules run after the main model's forward, on its hidden states)."""

    def __init__(self, model: nn.Module, loss: LossConfig, stats: RouterStats | None):
        super().__init__()
        self.lm = model
        self.loss_cfg = loss
        self.stats = stats
        self.mtp_depth = len(getattr(model, "mtp", [])) if loss.mtp_weight > 0 else 0

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None,
                norms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """norms = [main targets, mtp targets per depth..., sequences] of the whole global step.
        Returns (this micro-batch's share of the step objective, detached raw sums for logging:
        [ce sum, mtp ce sum per depth..., balance sum])."""
        cfg = self.loss_cfg
        if self.stats is not None:
            self.stats.clear_routing()
            self.stats.token_mask = attention_mask
        batch = Batch(input_ids, labels, attention_mask)
        logits, hidden = self.lm(input_ids, attention_mask=attention_mask, return_hidden=True)
        ce = token_ce_sum(logits, labels)
        objective = ce / norms[0].clamp(min=1)
        sums = [ce.detach()]
        if self.mtp_depth:
            for k, lg in enumerate(self.lm.mtp_logits(hidden, input_ids), start=1):
                m = token_ce_sum(lg, mtp_labels(labels, k))
                objective = objective + cfg.mtp_weight / self.mtp_depth * m / norms[k].clamp(min=1)
                sums.append(m.detach())
        bal = logits.new_zeros((), dtype=torch.float32)
        if self.stats is not None and cfg.balance != "none" and self.stats.routing:
            per_seq = cfg.balance == "bias"
            alpha = cfg.seq_aux_alpha if per_seq else cfg.aux_alpha
            if alpha > 0:
                total, _ = balance_loss_sum(self.stats.routing, batch, per_sequence=per_seq)
                # per sequence: sum over sequences / global sequences; batch-wise: this micro-batch's
                # value weighted by its share of the global sequences.
                bal = total if per_seq else total * input_ids.shape[0]
                objective = objective + alpha * bal / norms[-1].clamp(min=1)
        if self.stats is not None:
            self.stats.clear_routing()
            self.stats.token_mask = None
        sums.append(bal.detach())
        return objective, torch.stack([s.float() for s in sums])


@dataclass
class LoopSpec:
    """What the generic loop needs besides the config: the data and how to batch it."""
    train_set: Any  # PackedDataset | ExampleDataset
    eval_set: Any | None
    batch_size: int
    grad_accum: int
    bucket: bool = False
    model_files: dict[str, str] | None = None  # tokenizer files copied into every checkpoint's model folder
    description: str = "train"


class Trainer:
    """fit() runs cfg.run.max_steps steps of `spec.train_set` on `model`, resuming when asked.
    cfg needs the sections run, optim, loss, fp8, dist (see PretrainConfig / SFTConfig)."""

    def __init__(self, cfg: Any, model: nn.Module, spec: LoopSpec, dist: DistInfo | None = None):
        self.cfg, self.spec = cfg, spec
        self.dist = dist or init_distributed(cfg.run.device, cfg.dist.backend)
        self.model = model
        self.out = Path(cfg.run.out_dir)
        self.ckpts = CheckpointManager(self.out / "checkpoints", cfg.run.keep_last, self.dist)
        self.global_batch = spec.batch_size * spec.grad_accum * self.dist.world_size
        self.sampler = BatchSampler(spec.train_set.lengths(), self.global_batch, seed=cfg.run.seed,
                                    bucket=spec.bucket)
        self.autocast_dtype = torch_dtype(cfg.run.dtype)
        self.step = 0

    # ----- setup
    def _setup(self) -> Path | None:
        run = self.cfg.run
        resume_from = None
        if run.resume:
            self.ckpts.remove_incomplete()
            barrier(self.dist)
            resume_from = self.ckpts.latest()
        elif self.ckpts.latest() is not None:
            # Starting over on top of another run's checkpoints would mix the two (pruning and a
            # later --resume would pick the stale ones).
            raise TrainConfigError(f"{self.out} already holds checkpoints ({self.ckpts.latest().name}); pass --resume "
                                   "(run.resume=true) to continue it, or choose another run.out_dir")
        if resume_from is not None:
            self.ckpts.load_model(resume_from, self.model)
        if self.cfg.fp8.enabled:
            enable_fp8(self.model, self.cfg.fp8)
        self.stats = RouterStats(self.model) if any(True for _ in self._gates()) else None
        self.loss_module = LossModule(self.model, self.cfg.loss, self.stats)
        self.wrapped = wrap_model(self.loss_module, self.dist, self.cfg.dist.strategy)
        self.optimizer, self.scheduler = build_optimizer(self.wrapped, self.cfg.optim, run.max_steps)
        if resume_from is not None:
            state = self.ckpts.read_state(resume_from)
            self.ckpts.load_optimizer(resume_from, self.model, self.optimizer)
            self.ckpts.load_scheduler(resume_from, self.scheduler)
            self.ckpts.load_rng(resume_from)
            self.sampler.load_state_dict(state["data"]["sampler"])
            self.step = int(state["step"])
        return resume_from

    def _gates(self):
        from r1.model.deepseek import Gate

        return (m for m in self.model.modules() if isinstance(m, Gate))

    def _autocast(self):
        if self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.autocast_dtype)

    # ----- one step
    def _norms(self, batches: list[Batch]) -> torch.Tensor:
        depth = self.loss_module.mtp_depth
        n = torch.zeros(depth + 2, dtype=torch.float32, device=self.dist.device)
        for b in batches:
            n[0] += b.num_targets
            for k in range(1, depth + 1):
                n[k] += int((mtp_labels(b.labels, k) != -100).sum())
            n[-1] += b.input_ids.shape[0]
        return all_reduce_sum(n, self.dist)

    def train_step(self, step: int) -> dict[str, Any]:
        t0 = time.time()
        parts = micro_batches(self.sampler.next(), self.dist.rank, self.dist.world_size, self.spec.grad_accum)
        batches = [self.spec.train_set.collate(p).to(self.dist.device) for p in parts]
        norms = self._norms(batches)
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.stats is not None:
            self.stats.reset_loads()
        sums = None
        objective_total = 0.0
        for i, b in enumerate(batches):
            with no_sync(self.wrapped, sync=i == len(batches) - 1):
                with self._autocast():
                    objective, s = self.wrapped(b.input_ids, b.labels, b.attention_mask, norms)
                if any_rank(not bool(torch.isfinite(objective)), self.dist):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteError(self._nonfinite_msg(step, f"loss is {objective.item()} on micro-batch {i}"))
                # x world_size: DDP/FSDP average gradients over ranks; the objective is a global sum.
                (objective * self.dist.world_size).backward()
            sums = s if sums is None else sums + s
            objective_total += float(objective.detach())
        clip = self.cfg.optim.grad_clip
        params = [p for p in self.wrapped.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        gnorm = float(gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm)
        if any_rank(not torch.isfinite(torch.tensor(gnorm)).item(), self.dist):
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not torch.isfinite(p.grad.detach().float()).all()][:5]
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteError(self._nonfinite_msg(step, f"gradient norm is {gnorm} (non-finite gradients in {bad})"))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        metrics = self._step_metrics(sums, norms, objective_total, gnorm, lr)
        metrics["step_time"] = round(time.time() - t0, 4)
        metrics["tokens"] = int(norms[0].item())
        return metrics

    def _step_metrics(self, sums: torch.Tensor, norms: torch.Tensor, objective: float, gnorm: float,
                      lr: float) -> dict[str, Any]:
        sums = all_reduce_sum(sums.detach().clone(), self.dist)
        depth = self.loss_module.mtp_depth
        m: dict[str, Any] = {"loss": float(all_reduce_sum(torch.tensor([objective], device=self.dist.device),
                                                          self.dist).item()),
                             "lm_loss": float(sums[0] / norms[0].clamp(min=1)), "lr": lr, "grad_norm": gnorm}
        if depth:
            m["mtp_loss"] = float(sum(sums[k] / norms[k].clamp(min=1) for k in range(1, depth + 1)) / depth)
        if self.stats is not None:
            cfg = self.cfg.loss
            m["balance_loss"] = float(sums[-1] / norms[-1].clamp(min=1))
            gamma = cfg.bias_update_speed if cfg.balance == "bias" else 0.0
            imb = update_expert_bias(self.stats, gamma, self.dist)
            for name, v in imb.items():
                m[f"moe_imbalance/{gate_label(name)}"] = v
            if imb:
                m["moe_imbalance"] = sum(imb.values()) / len(imb)
        return m

    def _nonfinite_msg(self, step: int, what: str) -> str:
        last = self.ckpts.latest()
        keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        return (f"step {step}: {what}; the update was NOT applied and training stopped ({keep}). "
                "Lower optim.lr, enable optim.grad_clip, or check the data; resume with --resume.")

    @torch.no_grad()
    def evaluate(self) -> float | None:
        ds = self.spec.eval_set
        if ds is None or self.cfg.run.eval_batches == 0:
            return None
        self.wrapped.eval()
        n_sum = torch.zeros(2, dtype=torch.float64, device=self.dist.device)
        per_rank = self.spec.batch_size
        # The same number of full batches on every rank (FSDP forwards are collectives).
        n_batches = min(self.cfg.run.eval_batches, len(ds) // (per_rank * self.dist.world_size))
        if n_batches == 0:
            return None
        for k in range(n_batches):
            start = (k * self.dist.world_size + self.dist.rank) * per_rank
            idx = list(range(start, start + per_rank))
            b = ds.collate(idx).to(self.dist.device)
            norms = torch.ones(self.loss_module.mtp_depth + 2, device=self.dist.device)
            with self._autocast():  # through the wrapper: under FSDP only it gathers the root parameters
                _, sums = self.wrapped(b.input_ids, b.labels, b.attention_mask, norms)
            n_sum[0] += float(sums[0])
            n_sum[1] += b.num_targets
        all_reduce_sum(n_sum, self.dist)
        self.wrapped.train()
        return float(n_sum[0] / n_sum[1].clamp(min=1))

    # ----- the run
    def save(self) -> Path:
        import yaml

        return self.ckpts.save(self.step, self.model, self.optimizer, self.scheduler,
                               data_state={"sampler": self.sampler.state_dict()},
                               model_files=self.spec.model_files,
                               config_yaml=yaml.safe_dump(to_dict(self.cfg), sort_keys=False))

    def fit(self) -> list[dict[str, Any]]:
        run = self.cfg.run
        resume_from = self._setup()
        main = self.dist.is_main
        if main:
            save_config(self.cfg, self.out / CONFIG_FILE)
        logger = MetricsLogger(self.out, enabled=main, resume_step=self.step if resume_from else None)
        history: list[dict[str, Any]] = []
        progress = TrainProgress(run.max_steps, self.step, enabled=main and run.progress,
                                 description=self.spec.description, show=("loss", "lm_loss", "lr"),
                                 plain_every=max(run.log_every, run.max_steps // 10 or 1))
        try:
            with progress:
                if resume_from is not None and main:
                    progress.print(f"resumed from {resume_from} (step {self.step})", always=True)
                elif run.resume and main:
                    progress.print(f"no complete checkpoint in {self.ckpts.root}: starting from step 0", always=True)
                while self.step < run.max_steps:
                    self.step += 1
                    metrics = self.train_step(self.step)
                    if run.eval_every and (self.step % run.eval_every == 0 or self.step == run.max_steps):
                        metrics["eval_loss"] = self.evaluate()
                    if self.step % run.log_every == 0 or self.step == run.max_steps:
                        history.append(logger.log(self.step, **metrics))
                    progress.update(self.step, metrics)
                    if (run.save_every and self.step % run.save_every == 0) or self.step == run.max_steps:
                        self.save()
        finally:
            logger.close()
            if self.stats is not None:
                self.stats.remove()
        if main:
            export_final(self.ckpts.latest(), self.out / MODEL_DIR)
        barrier(self.dist)
        return history


def export_final(checkpoint: Path | None, dest: Path) -> None:
    """Copy the last checkpoint's model folder to RUN/model (what `r1 run RUN/model` loads)."""
    if checkpoint is None:
        return
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint / MODEL_DIR, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
