"""Atomic, safe-loading training checkpoints that a killed run resumes from.

Layout of one checkpoint (RUN/checkpoints/step_00000100/):
    model/                      HF safetensors + config.json (+ tokenizer files): `r1 run` loads it as is
    optimizer.safetensors       optimizer tensors (keyed by parameter name, so DDP/FSDP/world size do not matter)
    trainer_state.json          step, data position, scheduler, optimizer hyper-parameters, user extras
    rng_rank{R}.safetensors     torch CPU (+ CUDA) generator state of rank R
    rng_rank{R}.json            python `random` state of rank R
    config.yaml                 the run's resolved config
    COMPLETE                    written last: a directory without it is never loaded

Everything is written into RUN/checkpoints/.tmp-step_00000100, the marker last, then the
directory is renamed into place (atomic on POSIX), so SIGKILL at any moment leaves either the
previous checkpoints alone or a new complete one. Nothing is unpickled: tensors go through
safetensors, everything else through JSON.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from r1.train.dist import DistInfo, barrier, is_fsdp, unwrap

MARKER = "COMPLETE"
MODEL_DIR = "model"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    pass


# ---------------------------------------------------------------- JSON <-> tensors
def split_tensors(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    """Replace every tensor in a nested structure by {"__tensor__": key}, collecting the tensors;
    dicts with non-string keys (torch optimizer state uses ints) keep their key types."""
    if isinstance(obj, torch.Tensor):
        key = prefix.strip("/")
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, tensors, f"{prefix}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, split_tensors(v, tensors, f"{prefix}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [split_tensors(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [split_tensors(v, tensors, f"{prefix}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} at {prefix!r} in a checkpoint (JSON + safetensors only)")


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"checkpoint refers to tensor {key!r}, which its safetensors file lacks")
            return tensors[key]
        if set(obj) == {"__items__"}:
            return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(join_tensors(v, tensors) for v in obj["__tuple__"])
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


# ---------------------------------------------------------------- state collection
def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    version, state, gauss = random.getstate()
    return tensors, {"python": [version, list(state), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if "python" in meta:
        version, state, gauss = meta["python"]
        random.setstate((version, tuple(state), gauss))


class _StateView:
    """What `r1.save_model` needs of a model (its config and a full state dict) when the live
    model is sharded and the full state was gathered separately."""

    def __init__(self, config, state: dict[str, torch.Tensor]):
        self.config, self._state = config, state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded, CPU) state dict; a collective under FSDP, so every rank calls it."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(model).state_dict()


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Optimizer state keyed by parameter name (not position), so it survives re-wrapping, a
    different world size, or a change of DDP <-> FSDP. A collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ---------------------------------------------------------------- the manager
class CheckpointManager:
    """Save / find / load checkpoints under `root` (RUN/checkpoints), keeping the newest `keep_last`.

    All ranks call save() and load(); rank 0 writes the shared parts, every rank its RNG state.
    """

    def __init__(self, root: str | Path, keep_last: int = 3, dist: DistInfo | None = None):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.root = Path(root)
        self.keep_last = keep_last
        self.dist = dist or DistInfo()

    # ----- discovery
    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir()
                 if (m := _STEP_DIR.match(p.name)) and (p / MARKER).is_file()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def path_for(self, step: int) -> Path:
        return self.root / f"step_{step:08d}"

    def remove_incomplete(self) -> None:
        """Delete leftovers of a save that was killed (rank 0 only)."""
        if not self.dist.is_main or not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.name.startswith(".tmp-") or (_STEP_DIR.match(p.name) and not (p / MARKER).is_file()):
                shutil.rmtree(p, ignore_errors=True)

    # ----- save
    def save(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
             scheduler: Any = None, data_state: dict | None = None, extra: dict | None = None,
             model_files: dict[str, str] | None = None, config_yaml: str | None = None,
             rank_state: dict | None = None) -> Path:
        """Write checkpoint `step`. model_files: extra text files for the model folder (the
        tokenizer, so the checkpoint is a runnable model). rank_state: this rank's own JSON state
        (every rank writes one; read it back with read_rank_state). Returns the final directory."""
        final = self.path_for(step)
        tmp = self.root / f".tmp-{final.name}"
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier(self.dist)
        # Collectives first (FSDP gathers): every rank takes part, rank 0 keeps the result.
        model_state = full_model_state(model)
        optim_state = full_optimizer_state(model, optimizer) if optimizer is not None else None
        rng_t, rng_meta = rng_state()
        save_file(rng_t, str(tmp / f"rng_rank{self.dist.rank}.safetensors"))
        _write_json(tmp / f"rng_rank{self.dist.rank}.json", rng_meta)
        if rank_state is not None:
            _write_json(tmp / f"state_rank{self.dist.rank}.json", rank_state)
        if self.dist.is_main:
            from r1.formats.safetensors_io import save_checkpoint

            save_checkpoint(_StateView(unwrap(model).config, model_state), tmp / MODEL_DIR, extra_files=model_files)
            state: dict[str, Any] = {"step": step, "world_size": self.dist.world_size, "data": data_state or {},
                                     "extra": extra or {}, "time": time.time()}
            if optim_state is not None:
                tensors: dict[str, torch.Tensor] = {}
                state["optimizer"] = split_tensors(optim_state, tensors, "optim")
                save_file(tensors, str(tmp / "optimizer.safetensors"))
            if scheduler is not None:
                sched_tensors: dict[str, torch.Tensor] = {}
                state["scheduler"] = split_tensors(scheduler.state_dict(), sched_tensors, "sched")
                if sched_tensors:
                    raise CheckpointError("scheduler state holds tensors; keep it to plain numbers")
            _write_json(tmp / "trainer_state.json", state)
            if config_yaml is not None:
                (tmp / "config.yaml").write_text(config_yaml)
        barrier(self.dist)
        if self.dist.is_main:
            _fsync_tree(tmp)
            _write_json(tmp / MARKER, {"step": step})  # last: its presence means everything else is there
            _fsync_dir(tmp)
            if final.exists():  # a complete older save of the same step (a resumed run repeating it)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            for old in self.complete()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        barrier(self.dist)
        return final

    # ----- load
    def read_state(self, path: str | Path) -> dict:
        """trainer_state.json of a complete checkpoint: step, data position, extras."""
        path = Path(path)
        if not (path / MARKER).is_file():
            raise CheckpointError(f"{path}: not a complete checkpoint (no {MARKER} marker)")
        try:
            return json.loads((path / "trainer_state.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}/trainer_state.json: unreadable ({e})") from None

    def read_rank_state(self, path: str | Path) -> dict | None:
        """This rank's rank_state from save(); None when it has none (none was saved, or the run
        resumes with more ranks than it was saved with)."""
        f = Path(path) / f"state_rank{self.dist.rank}.json"
        return json.loads(f.read_text()) if f.is_file() else None

    def load_model(self, path: str | Path, model: nn.Module) -> None:
        """Weights (and the balancing biases) into the model; call BEFORE wrapping it in DDP/FSDP."""
        load_model_weights(unwrap(model), Path(path) / MODEL_DIR)

    def load_optimizer(self, path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer state into an optimizer built over `model`'s (possibly wrapped) parameters."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        path = Path(path)
        state = self.read_state(path)
        if "optimizer" not in state:
            raise CheckpointError(f"{path}: has no optimizer state")
        osd = join_tensors(state["optimizer"], load_file(str(path / "optimizer.safetensors")))
        # A parameter the optimizer held but never stepped (no gradient reached it: GRPO leaves the MTP
        # module untrained) was saved in its group without state; it resumes without state too. One
        # the checkpoint's optimizer never held is a different run: refused, by name.
        saved_in_groups = {n for g in osd.get("param_groups", []) for n in g.get("params", [])}
        in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
        stateless = [n for n, p in unwrap(model).named_parameters()
                     if id(p) in in_optimizer and p.requires_grad and n not in osd.get("state", {})]
        foreign = [n for n in stateless if n not in saved_in_groups]
        if foreign:
            raise CheckpointError(f"{path}: the optimizer state has no entry for {len(foreign)} trained "
                                  f"parameter(s) it never held, e.g. {foreign[0]!r}: a checkpoint of another model "
                                  "or optimizer setup")
        set_optimizer_state_dict(model, optimizer, osd,
                                 options=StateDictOptions(full_state_dict=True, strict=not stateless))

    def load_scheduler(self, path: str | Path, scheduler: Any) -> None:
        state = self.read_state(path)
        if "scheduler" not in state:
            raise CheckpointError(f"{path}: has no scheduler state")
        scheduler.load_state_dict(join_tensors(state["scheduler"], {}))

    def load_rng(self, path: str | Path) -> bool:
        """This rank's generator states; False when the checkpoint has none for this rank
        (resumed with more ranks than it was saved with)."""
        path = Path(path)
        rng_file = path / f"rng_rank{self.dist.rank}.safetensors"
        if not rng_file.is_file():
            return False
        set_rng_state(load_file(str(rng_file)), json.loads((path / f"rng_rank{self.dist.rank}.json").read_text()))
        return True

    def restore(self, path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                scheduler: Any = None, restore_rng: bool = True) -> dict:
        """All of it at once, for an unwrapped model (single process); returns trainer_state."""
        state = self.read_state(path)
        self.load_model(path, model)
        if optimizer is not None:
            self.load_optimizer(path, model, optimizer)
        if scheduler is not None:
            self.load_scheduler(path, scheduler)
        if restore_rng:
            self.load_rng(path)
        return state


def load_model_weights(model: nn.Module, folder: str | Path) -> None:
    """Fill an existing (unwrapped) model from an HF safetensors folder, every shape checked."""
    from r1.formats.loader import load_tensors
    from r1.formats.safetensors_io import iter_safetensors

    # Read as fp32 and let copy_ cast: the balancing biases are fp32 buffers even in a bf16 model.
    load_tensors(model, iter_safetensors(folder, dtype=torch.float32), str(folder))
