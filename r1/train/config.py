"""Training configs: flat dataclasses per concern, nested into one config per trainer, loaded from
YAML recipes with `KEY=VALUE` overrides (dotted keys reach nested fields: `optim.lr=3e-4`).

Any trainer config (pretrain, sft, grpo, ...) is a dataclass whose fields are plain values or
other dataclasses; `load_config(cls, yaml_path, overrides)` builds it, checking every key and
coercing every value to the field's declared type, so a typo in a recipe fails with the list of
valid keys instead of being silently ignored. Every trainer config has a `run: RunConfig` (out
dir, seed, steps, checkpointing) so the CLI can set `--resume` and friends the same way for all.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from r1.errors import R1Error

C = TypeVar("C")

CONFIG_FILE = "config.yaml"  # the resolved config, written next to a run's checkpoints


class TrainConfigError(R1Error, ValueError):
    """A config value or key that cannot work; the message names the key and what to do."""


# ---------------------------------------------------------------- concerns shared by trainers
@dataclass
class RunConfig:
    """Where a run writes, how long it runs, how often it logs and checkpoints."""
    out_dir: str = "runs/run"
    seed: int = 0
    max_steps: int = 100
    log_every: int = 1
    save_every: int = 50  # steps between checkpoints (the last step is always saved); 0 = only the last
    keep_last: int = 3  # complete checkpoints kept; older ones are deleted once a newer one is complete
    resume: bool = False  # continue from the newest complete checkpoint in out_dir
    deterministic: bool = False  # torch.use_deterministic_algorithms: bitwise-repeatable CPU runs
    device: str = "auto"  # auto = cuda:<local rank> when CUDA is present, else cpu
    dtype: str = "float32"  # compute dtype of the model: float32 or bfloat16 (master weights stay fp32 under fp8)
    progress: bool = True  # rich progress display (rank 0, only on a terminal)
    eval_every: int = 0  # steps between held-out evaluations; 0 = none
    eval_batches: int = 4

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise TrainConfigError(f"run.max_steps must be positive, got {self.max_steps}")
        for name in ("log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every", "eval_batches"):
            if getattr(self, name) < 0:
                raise TrainConfigError(f"run.{name} must be >= 0, got {getattr(self, name)}")
        if self.dtype not in DTYPES:
            raise TrainConfigError(f"run.dtype={self.dtype!r}: choose one of {sorted(DTYPES)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise TrainConfigError(f"run.device={self.device!r}: use auto, cpu, cuda or cuda:N")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine/linear decay to min_lr_ratio * lr (V3 used AdamW)."""
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping (the norm is still checked for NaN/Inf)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise TrainConfigError(f"optim.lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise TrainConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise TrainConfigError(f"optim.schedule={self.schedule!r}: choose cosine, linear or constant")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise TrainConfigError("optim.warmup_steps, grad_clip and weight_decay must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise TrainConfigError(f"optim.beta1/beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")


@dataclass
class ModelSpec:
    """Which model to train: a checkpoint folder (`init_from`) or a fresh one from a preset
    (`preset` plus `overrides`, e.g. {vocab_size: 1024}); vocab_size follows the tokenizer
    when training from scratch, so a preset never disagrees with the tokenizer it is paired with."""
    preset: str = "tiny-deepseek"
    init_from: str | None = None  # HF safetensors folder (e.g. a previous stage's output)
    overrides: dict = field(default_factory=dict)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        from r1.config import PRESETS

        if self.init_from and self.overrides:
            raise TrainConfigError("model.overrides only shape a fresh model from model.preset; a model.init_from "
                                   "checkpoint keeps its own config.json (drop one of the two)")
        if self.init_from is None and self.preset not in PRESETS:
            raise TrainConfigError(f"model.preset={self.preset!r} is unknown; known: {', '.join(PRESETS)} "
                                   "(or set model.init_from to a checkpoint folder)")
        if self.init_std <= 0:
            raise TrainConfigError(f"model.init_std must be positive, got {self.init_std}")


@dataclass
class DistConfig:
    """How to spread a run over the ranks torchrun starts (ignored in a single process)."""
    strategy: str = "ddp"  # ddp | fsdp (FSDP2 fully_shard: parameters, grads, optimizer state sharded)
    backend: str = "auto"  # auto = nccl on CUDA, gloo on CPU

    def __post_init__(self) -> None:
        if self.strategy not in ("ddp", "fsdp"):
            raise TrainConfigError(f"dist.strategy={self.strategy!r}: choose ddp or fsdp")
        if self.backend not in ("auto", "gloo", "nccl"):
            raise TrainConfigError(f"dist.backend={self.backend!r}: choose auto, gloo or nccl")


DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


# ---------------------------------------------------------------- loading
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """value (from YAML or an override string) -> the field type tp, or a TrainConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except TrainConfigError as e:
                errors.append(str(e))
        raise TrainConfigError(f"{key}: {value!r} fits none of {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise TrainConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise TrainConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise TrainConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise TrainConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise TrainConfigError(f"{key}: expected a number, got {value!r}")
        try:  # YAML 1.1 reads `1e-3` (no dot) as a string; accept it as the number it means
            return float(value)
        except (TypeError, ValueError):
            raise TrainConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise TrainConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value) or {}
        if not isinstance(value, dict):
            raise TrainConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[C], data: dict, prefix: str = "") -> C:
    """Build dataclass `cls` from a (nested) dict; unknown keys are errors naming the valid ones."""
    if not isinstance(data, dict):
        raise TrainConfigError(f"{prefix or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise TrainConfigError(f"unknown config key {prefix}{unknown[0]!r}; valid keys here: {', '.join(names)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        factory = fields[k].default_factory
        if isinstance(v, dict) and factory is not dataclasses.MISSING:
            default = factory()
            if dataclasses.is_dataclass(default):
                # a section given in part layers on the field's own default (GRPO's optimizer, not the
                # OptimConfig class defaults; run.out_dir "runs/grpo"), not on its class's
                v = merge(to_dict(default), v)
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    try:
        return cls(**kwargs)
    except TrainConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise TrainConfigError(f"{prefix or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain dicts/lists/scalars (what YAML and JSON can hold)."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def parse_overrides(overrides: list[str]) -> dict:
    """["optim.lr=3e-4", "run.resume=true"] -> {"optim": {"lr": 3e-4}, "run": {"resume": True}}.
    Values are read as YAML scalars/flow collections (so `a=[1,2]` and `b={x: 1}` work)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise TrainConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise TrainConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TrainConfigError(f"override {item!r}: {p} is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge: extra wins; nested sections merge key by key. Dict-typed fields
    (model.overrides) merge too, so an override adds a key instead of replacing the mapping."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise TrainConfigError(f"{p}: no such config file") from None
    except yaml.YAMLError as e:
        raise TrainConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise TrainConfigError(f"{p}: the top level must be a mapping of config sections")
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                section: str | None = None) -> C:
    """Defaults of `cls`, then the YAML file (or its `section` key, for multi-stage recipes),
    then the KEY=VALUE overrides; every layer is checked against the dataclass."""
    data: dict = {}
    if path is not None:
        data = load_yaml(path)
        if section is not None:
            if section not in data:
                raise TrainConfigError(f"{path}: no section {section!r} (has {', '.join(data)})")
            data = data[section]
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically: a half-written config would mislead a resume)."""
    from r1.fileio import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
