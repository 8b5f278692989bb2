"""Model families. `build_model(cfg)` picks the class for cfg.arch (a table, not an if-chain)."""
from __future__ import annotations

import torch

from r1.config import ModelConfig
from r1.model.base import CausalLM
from r1.model.deepseek import DeepseekV3ForCausalLM
from r1.model.dense import DenseForCausalLM

MODEL_CLASSES: dict[str, type[CausalLM]] = {
    "deepseek_v3": DeepseekV3ForCausalLM,
    "llama": DenseForCausalLM,
    "qwen2": DenseForCausalLM,
    "qwen3": DenseForCausalLM,
}


def build_model(cfg: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalLM:
    """An uninitialized model (use device="meta" to count parameters without memory)."""
    with torch.device(device):
        model = MODEL_CLASSES[cfg.arch](cfg)
    return model.to(dtype=dtype) if str(device) != "meta" else model


__all__ = ["CausalLM", "DeepseekV3ForCausalLM", "DenseForCausalLM", "MODEL_CLASSES", "build_model"]
