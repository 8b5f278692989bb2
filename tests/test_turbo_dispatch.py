"""The turbo profile under torch's AVX2 dispatch and its default one, in that order, sharing one
cache folder: what a laptop-class CPU runs, and the sequence that crashed.

Before compiled graphs were cached per dispatch level (r1/engine/compiled.py, inductor_cache_dir),
the default-dispatch run after an AVX2 one reused the AVX2 run's graphs and segfaulted (rc 139) on
the embedded default, or corrupted the heap on SmolLM2. Each child runs base, turbo, and turbo
with compilation off (tests/turbo_probe.py); the compiled single-row step must give the eager
step's greedy tokens, and turbo's int8 weights and cache must mostly agree with base's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1.commands.common import EMBEDDED_DEFAULT

PROBE = Path(__file__).parent / "turbo_probe.py"


def probe(model: Path, cache_home: Path, level: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "TORCHINDUCTOR_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(cache_home)
    if level:
        env["ATEN_CPU_CAPABILITY"] = level
    r = subprocess.run([sys.executable, str(PROBE), str(model)], env=env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, f"turbo probe at dispatch {level or 'default'} exited {r.returncode}: {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def agreement(a: dict, b: dict) -> float:
    pairs = [(x, y) for u, v in zip(a["one"] + a["many"], b["one"] + b["many"]) for x, y in zip(u, v)]
    return sum(x == y for x, y in pairs) / len(pairs)


def test_turbo_under_avx2_then_default_dispatch(tmp_path):
    import torch

    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX2"):
        pytest.skip("needs an x86 CPU with AVX2")
    for level in ("avx2", None):
        out = probe(EMBEDDED_DEFAULT, tmp_path, level)
        want = "AVX2" if level else torch.backends.cpu.get_cpu_capability()
        assert out["runtime"]["torch dispatch level"].startswith(want)
        assert out["turbo"]["compiled"] and not out["turbo_eager"]["compiled"]
        assert out["turbo"]["one"] == out["turbo_eager"]["one"]  # the compiled step is the eager step
        assert agreement(out["turbo"], out["base"]) >= 0.75, out
    levels = {p.name.split("-")[2] for p in (tmp_path / "r1" / "inductor").iterdir()}
    assert levels == {"avx2", torch.backends.cpu.get_cpu_capability().lower()}  # one folder per level
