"""OpenAI/DeepSeek- and Ollama-compatible HTTP serving over the engine: `create_app(...)`."""
from __future__ import annotations


def create_app(*args, **kwargs):
    # imported lazily: fastapi/uvicorn are the `serve` extra, not needed to import r1.serve.guard etc.
    from r1.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
