"""r1: DeepSeek-R1, runnable. Public API: load_model, load_tokenizer, save_model, ModelConfig,
LLM, LLMEngine, EngineConfig and SamplingParams (the engine).

Names are imported on first use, so `import r1.sandbox` or `r1 sandbox` do not pay for torch.
"""
from __future__ import annotations

import importlib

# public name -> (module, attribute)
_EXPORTS = {
    "ModelConfig": ("r1.config", "ModelConfig"),
    "load_model": ("r1.engine.load", "load_model"),
    "save_model": ("r1.formats.safetensors_io", "save_checkpoint"),
    "load_tokenizer": ("r1.chat.tokenizer", "load_tokenizer"),
    "LLM": ("r1.engine.engine", "LLM"),
    "LLMEngine": ("r1.engine.engine", "LLMEngine"),
    "EngineConfig": ("r1.engine.engine", "EngineConfig"),
    "SamplingParams": ("r1.engine.sampling", "SamplingParams"),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'r1' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
