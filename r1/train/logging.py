"""Run metrics as JSONL (one object per logged step) and a `rich` progress display with ETA.

The metrics file is resume-safe: a resumed run first drops every record after the checkpoint
it resumes from (they will be produced again) and any half-written last line (a SIGKILL can
land mid-write), so a killed-and-resumed run's file reads like an uninterrupted run's.
Only rank 0 writes; the other ranks get a logger that does nothing.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def _clean(v: Any) -> Any:
    # JSON has no NaN/Inf; write them as strings so a diverging run's file still parses.
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(path: str | Path) -> list[dict]:
    """All complete records of a metrics file (a torn last line is skipped)."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    out = []
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
        if isinstance(rec, dict):
            out.append(rec)
    return out


class MetricsLogger:
    """`log(step, **metrics)` appends {"step", "time", ...metrics} to run_dir/metrics.jsonl.

    resume_step: keep only records with step <= resume_step (None = start a fresh file).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None,
                 filename: str = METRICS_FILE):
        self.path = Path(run_dir) / filename
        self.enabled = enabled
        self._t0 = time.time()
        self._f = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if resume_step is not None and r.get("step", 0) <= resume_step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def log(self, step: int, **metrics: Any) -> dict:
        rec = {"step": int(step), "time": round(time.time() - self._t0, 3)}
        rec.update({k: _clean(v) for k, v in metrics.items()})
        if self._f is not None:
            # One write + flush per record: the OS has the whole line even if the process is killed next.
            self._f.write(json.dumps(rec) + "\n")
            self._f.flush()
        return rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class TrainProgress:
    """A rich progress bar (steps, rate, ETA, the latest chosen metrics) on rank 0; when stdout is
    not a terminal (CI, log files), one plain line every `log_every` steps instead."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, description: str = "train",
                 show: tuple[str, ...] = ("loss", "lr"), plain_every: int = 10):
        self.total, self.step, self.show = total, start, show
        self.enabled = enabled
        self.plain_every = max(1, plain_every)
        self.description = description
        self._progress = None
        self._task = None
        self._t0 = time.time()
        self._start = start
        if enabled and sys.stdout.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                      TextColumn("{task.fields[metrics]}"))
            self._task = self._progress.add_task(description, total=total, completed=start, metrics="")

    def __enter__(self) -> "TrainProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, metrics: dict | None = None) -> None:
        self.step = step
        text = "  ".join(f"{k}={_fmt(metrics[k])}" for k in self.show if metrics and k in metrics)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, metrics=text)
        elif self.enabled and (step % self.plain_every == 0 or step == self.total):
            done = step - self._start
            elapsed = time.time() - self._t0
            eta = elapsed / done * (self.total - step) if done else float("nan")
            print(f"[{self.description}] step {step}/{self.total}  {text}  eta {eta:.0f}s", flush=True)

    def print(self, msg: str, always: bool = False) -> None:
        """A message above the bar; `always`: even with the display off (still rank 0's call to make)."""
        if not (self.enabled or always):
            return
        if self._progress is not None:
            self._progress.console.print(msg)
        else:
            print(msg, flush=True)
