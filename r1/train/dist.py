"""torch.distributed for trainers: process-group setup from torchrun's environment, model
wrapping (DDP, or FSDP2 `fully_shard` for models that do not fit one device), reductions.

A single process (no torchrun) is world size 1 and every helper is a no-op, so trainers call
them unconditionally. State lives in the returned `DistInfo`, not in module globals.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None = single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(device)


def init_distributed(device: str = "auto", backend: str = "auto", timeout_s: float = 600) -> DistInfo:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR) or
    return a single-process DistInfo. gloo on CPU, NCCL on CUDA, unless `backend` says otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(device=dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise RuntimeError("dist.backend=nccl needs CUDA devices; use gloo on CPU")
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                                 device_id=dev if dev.type == "cuda" else None)
    return DistInfo(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                    device=dev, backend=backend)


def cleanup(info: DistInfo) -> None:
    """Leave the process group. The barrier first: a rank that tears gloo down while another
    still talks to it can abort the process ("terminate called without an active exception")."""
    if info.distributed and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        tdist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks, in place; returns t for chaining."""
    if info.distributed:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        t /= info.world_size
    return t


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return t


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when `flag` is true on any rank (e.g. a non-finite loss somewhere stops every rank)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    return bool(all_reduce_max(t, info).item() > 0)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    if not info.distributed:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=src)
    return box[0]


def has_routed_experts(model: nn.Module) -> bool:
    return any(type(m).__name__ == "Gate" for m in model.modules())


def default_blocks(model: nn.Module) -> list[nn.Module]:
    """The units FSDP shards one by one: the decoder layers of a CausalLM (found inside wrappers)."""
    for m in model.modules():
        layers = getattr(getattr(m, "model", None), "layers", None)
        if isinstance(layers, nn.ModuleList):
            return list(layers)
    return []


def wrap_model(model: nn.Module, info: DistInfo, strategy: str = "ddp", blocks: list[nn.Module] | None = None
               ) -> nn.Module:
    """DDP or FSDP2 around `model` (returned as is in a single process). Wrap the module whose
    forward computes the whole loss: DDP and FSDP only see parameters used inside forward().

    DDP: MoE experts that got no token on a rank have no gradient there, so DDP looks for unused
    parameters (it still averages every expert's gradient over all ranks).
    FSDP2: each block (default: every decoder layer) is its own shard group, the rest is the root
    group; the root stays unsharded from forward to backward, so code that reuses the embedding
    and head after the main forward (the MTP losses) may do so. Buffers (the balancing biases)
    are not sharded; the trainer updates them identically on every rank from all-reduced loads.
    """
    if not info.distributed:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [info.device.index] if info.device.type == "cuda" else None
        # Buffers are not re-broadcast each forward: the balancing biases are updated identically on every rank.
        return DDP(model, device_ids=ids, find_unused_parameters=has_routed_experts(model), forward_sync_buffers=False)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in (default_blocks(model) if blocks is None else blocks):
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"unknown dist strategy {strategy!r}: choose ddp or fsdp")


def unwrap(model: nn.Module) -> nn.Module:
    """The module with the model's own attributes (config, mtp_logits) behind a DDP wrapper."""
    return model.module if hasattr(model, "module") and isinstance(getattr(model, "module"), nn.Module) else model


def no_sync(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on micro-batches that are not the last of a step."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2 module

        @contextlib.contextmanager
        def _fsdp():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return _fsdp()
    return contextlib.nullcontext()


def is_fsdp(model: nn.Module) -> bool:
    """Whether any part of `model` is sharded by FSDP2 (its state must be gathered collectively)."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())
