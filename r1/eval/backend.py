"""The harness's only contact with a model: render a chat, complete prompts, count tokens.

Keeping this narrow lets the metric and report logic be tested without a model, and lets the
same harness run over the in-process engine or (later) an HTTP server.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int | None = None  # completion length in tokens, when the backend knows it
    finish_reason: str | None = None  # "stop" / "length"; "length" means the sample was truncated


@runtime_checkable
class Backend(Protocol):
    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for a conversation, ending in the assistant's generation prompt."""
        ...

    def complete(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_tokens: int, seed: int) -> Sequence[Sequence[Generation | str]]:
        """n completions for each prompt (prompt text in, completion text out)."""
        ...

    def count_tokens(self, text: str) -> int: ...


def as_generation(g: Generation | str) -> Generation:
    return g if isinstance(g, Generation) else Generation(text=str(g))


class EngineBackend:
    """A checkpoint (safetensors folder or .gguf file) run in-process through r1's engine:
    continuous batching, and the k samples of a prompt share its KV blocks (prefix caching)."""

    def __init__(self, path: str | Path, dtype: str = "float32", device: str = "cpu", batch_size: int = 64,
                 profile: str = "base"):
        import torch

        from r1.engine.engine import LLM

        if not Path(path).exists():
            raise FileNotFoundError(f"no model at {path} (expected a safetensors folder or a .gguf file)")
        if not hasattr(torch, dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        self.path = str(path)
        self.llm = LLM(path, dtype=getattr(torch, dtype), device=device, profile=profile, max_num_seqs=batch_size)
        self.tokenizer = self.llm.tokenizer
        self.max_model_len = self.llm.engine.max_model_len  # run_eval caps an unset max_tokens to it

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def complete(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_tokens: int, seed: int) -> list[list[Generation]]:
        from r1.engine.sampling import SamplingParams

        # Seeds are per prompt and sample (completion j of prompt i uses seed + i*n + j, the engine
        # gives a seeded sequence the same output whatever else is in the batch), so every sample is
        # reproducible from `seed` alone.
        ids = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed + i * n, n=n)
                  for i in range(len(prompts))]
        outs = self.llm.generate(ids, params)
        return [[Generation(text=c.text, num_tokens=len(c.token_ids), finish_reason=c.finish_reason)
                 for c in sorted(o.outputs, key=lambda c: c.index)] for o in outs]


def describe(backend: Any) -> str:
    return getattr(backend, "path", type(backend).__name__)
