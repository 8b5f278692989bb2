"""Waiting for a server started in another process (benchmarks, the screenshot tool) to answer /health."""
from __future__ import annotations

import subprocess
import time

import httpx


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float) -> str | None:
    """Poll `url`/health until it answers 200. None when it did; else why not ("exited", "timeout")."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return "timeout"
