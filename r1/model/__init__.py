"""Model families. `build_model(cfg)` picks the class for cfg.arch (a table, not an if-chain)."""
from __future__ import annotations

import torch
from torch.utils._device import DeviceContext, _device_constructors

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


class _MetaSkipsInit(DeviceContext):
    """Build on the meta device with nn.Module's own random initializations skipped: they are
    meaningless there, and torch runs meta normal_ through its Python references, whose first call
    imports torch._dynamo (a second of start-up: docs/bench-decode-real.md, session 11)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
        if name.endswith("_") and not name.startswith("__") and isinstance(target, torch.Tensor) and target.is_meta:
            return target  # an in-place fill (normal_, uniform_, zero_, ...) of a meta tensor: nothing to fill
        if func in _device_constructors() and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build_model(cfg: ModelConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> CausalLM:
    """An uninitialized model (use device="meta" to count parameters without memory)."""
    if torch.device(device).type == "meta":
        with _MetaSkipsInit("meta"):
            return MODEL_CLASSES[cfg.arch](cfg)
    with torch.device(device):
        model = MODEL_CLASSES[cfg.arch](cfg)
    return model.to(dtype=dtype) if str(device) != "meta" else model


__all__ = ["CausalLM", "DeepseekV3ForCausalLM", "DenseForCausalLM", "MODEL_CLASSES", "build_model"]
