"""r1's error types for what a user gave it, and the one line a command prints for any failure.

`BadFile` names the file and what is wrong with it; the loaders raise it (or have their errors
turned into it by `bad_file`), and `r1 <command>` prints `r1: <file>: <what>` and exits non-zero.
No traceback reaches a user unless R1_DEBUG=1 asks for it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


class R1Error(Exception):
    """A failure r1 can explain in one line."""


class BadFile(R1Error, ValueError):
    """A model, tokenizer or config file r1 cannot use. ValueError: callers that catch bad input
    as ValueError keep working."""

    def __init__(self, path: str | Path, what: str) -> None:
        self.path, self.what = str(path), what
        # a reader's message often names the file already (or a file inside the folder)
        super().__init__(what if what.startswith(self.path) else f"{self.path}: {what}")


@contextlib.contextmanager
def bad_file(path: str | Path):
    """Inside it, any error from reading `path` comes out as BadFile naming it (the original is
    chained as __cause__ for R1_DEBUG=1). An R1Error passes through as it is. Every Exception
    counts: hostile files make r1's readers and the libraries under them (safetensors' SafetensorError,
    tokenizers' exceptions, json, struct, jinja) raise all kinds, and each means "this file is bad"."""
    try:
        yield
    except R1Error:
        raise
    except Exception as e:
        raise BadFile(path, one_line(e)) from e


def one_line(e: BaseException) -> str:
    """The first line of an exception's message, with its type where the message alone is unclear."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, R1Error) or (isinstance(e, ValueError) and msg):
        return msg
    if isinstance(e, MemoryError) or "can't allocate memory" in msg or "DefaultCPUAllocator" in msg:
        return f"needs more memory than this machine has ({type(e).__name__}: {msg[:200]})"
    if isinstance(e, RecursionError):
        return "nested too deeply to read"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def debug() -> bool:
    return os.environ.get("R1_DEBUG", "") not in ("", "0")
