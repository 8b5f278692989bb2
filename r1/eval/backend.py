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
    """A checkpoint (safetensors folder or .gguf file) run in-process through r1's generator."""

    def __init__(self, path: str | Path, dtype: str = "float32", device: str = "cpu", batch_size: int = 16):
        import torch

        import r1

        if not Path(path).exists():
            raise FileNotFoundError(f"no model at {path} (expected a safetensors folder or a .gguf file)")
        if not hasattr(torch, dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        self.path = str(path)
        self.model = r1.load_model(path, dtype=getattr(torch, dtype), device=device)
        self.model.eval()
        self.tokenizer = r1.load_tokenizer(path)
        self.batch_size = batch_size  # sequences per generate() call; bounds memory

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def complete(self, prompts: list[str], n: int, temperature: float, top_p: float,
                 max_tokens: int, seed: int) -> list[list[Generation]]:
        from r1.engine.generate import generate
        from r1.engine.sampling import SamplingParams

        # Each prompt is repeated n times. Seeds are per sequence (the engine's sampler gives a
        # seeded request the same output whatever else is in the batch), so sample j of prompt i
        # is reproducible from `seed` alone, independent of batch_size.
        flat = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts for _ in range(n)]
        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed + i)
                  for i in range(len(flat))]
        out: list[Generation] = []
        for start in range(0, len(flat), self.batch_size):
            end = start + self.batch_size
            for c in generate(self.model, flat[start:end], params[start:end], tokenizer=self.tokenizer):
                out.append(Generation(text=c.text, num_tokens=len(c.token_ids), finish_reason=c.finish_reason))
        return [out[i * n:(i + 1) * n] for i in range(len(prompts))]


def describe(backend: Any) -> str:
    return getattr(backend, "path", type(backend).__name__)
