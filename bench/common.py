"""What several benchmark scripts share: the memory roofline and where results go."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def copy_bandwidth(mb: int = 256, reps: int = 5) -> float:
    """Bytes moved per second (read + write) by a large tensor copy: the memory roofline."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def write_results(name: str, results: dict, table: str) -> Path:
    """results/<name>.json, then the markdown table on stdout (copied into docs/)."""
    out = ROOT / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table)
    return out
