"""r1: DeepSeek-R1, runnable. Public API: load_model, load_tokenizer, save_model, ModelConfig,
LLM and SamplingParams (the engine)."""
from __future__ import annotations

from r1.config import ModelConfig
from r1.formats.loader import load_model
from r1.formats.safetensors_io import save_checkpoint as save_model
from r1.engine.engine import LLM, EngineConfig, LLMEngine
from r1.engine.sampling import SamplingParams


def load_tokenizer(path):
    """Tokenizer (with chat template) of a HF folder or a .gguf file."""
    from r1.chat.tokenizer import load_tokenizer as _load

    return _load(path)


__all__ = ["EngineConfig", "LLM", "LLMEngine", "ModelConfig", "SamplingParams", "load_model", "load_tokenizer",
           "save_model"]
