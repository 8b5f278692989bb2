"""`r1.load_model`: float checkpoints through r1.formats, r1's own quantized folders
(config.json `quantization_config.quant_method == "r1"`) through quant_io. It lives in the
engine layer because quantized modules are engine parts; formats never imports the engine."""
from __future__ import annotations

from pathlib import Path

import torch

from r1.formats.loader import load_model as load_float_model
from r1.model.base import CausalLM


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> CausalLM:
    from r1.engine.quant_io import load_quantized, read_quantization_config

    p = Path(path)
    qc = read_quantization_config(p) if p.is_dir() else None
    if qc and qc.get("quant_method") == "r1":
        return load_quantized(p, dtype=dtype, device=device)
    return load_float_model(p, dtype=dtype, device=device)
