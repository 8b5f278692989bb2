"""`r1 plot RUN_DIR`: one PNG per family of metrics in RUN_DIR/metrics.jsonl (loss, reward,
accuracy, response length, KL, expert load balance, lr, grad norm, entropy), drawn with matplotlib.

Which metric goes to which figure is a table of name patterns, so trainers only have to use
recognizable names (TRL's: `reward`, `rewards/<fn>/mean`, `completions/mean_length`, `kl`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from r1.train.logging import METRICS_FILE, read_metrics

# (file stem, title, y label, pattern on the metric name). A metric goes to the first figure it matches.
FIGURES: tuple[tuple[str, str, str, str], ...] = (
    ("balance", "expert load balance", "max / mean tokens per expert", r"^moe_imbalance|^balance_loss$"),
    ("loss", "loss", "loss", r"loss"),
    ("reward", "reward", "reward", r"reward"),
    ("accuracy", "accuracy", "accuracy", r"acc"),
    ("length", "response length", "tokens", r"length|len$"),
    ("kl", "KL to the reference", "KL", r"(^|/)kl($|/)"),
    ("entropy", "entropy", "nats per token", r"entropy"),
    ("lr", "learning rate", "lr", r"^lr$"),
    ("grad_norm", "gradient norm", "global L2 norm", r"grad_norm"),
)


def _numeric(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _smooth(ys: list[float], k: int) -> list[float]:
    if k <= 1:
        return ys
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= k:
            acc -= ys[i - k]
        out.append(acc / min(i + 1, k))
    return out


def series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """metric name -> (steps, values), finite numbers only."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        step = r.get("step")
        if not isinstance(step, int):
            continue
        for k, v in r.items():
            if k in ("step", "time", "step_time", "tokens"):
                continue
            y = _numeric(v)
            if y is not None:
                xs, ys = out.setdefault(k, ([], []))
                xs.append(step)
                ys.append(y)
    return out


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, smooth: int = 1) -> list[Path]:
    """Write one PNG per metric family present in the run; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (and none on a server)
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (a run folder holds {METRICS_FILE})")
    data = series(read_metrics(path))
    if not data:
        raise FileNotFoundError(f"{path}: holds no numeric metrics to plot")
    out = Path(out_dir) if out_dir else path.parent / "plots"
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[str]] = {}
    for name in sorted(data):
        for stem, _, _, pattern in FIGURES:
            if re.search(pattern, name):
                groups.setdefault(stem, []).append(name)
                break
    written = []
    for stem, title, ylabel, _ in FIGURES:
        names = groups.get(stem)
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        for name in names:
            xs, ys = data[name]
            ax.plot(xs, _smooth(ys, smooth), label=name, marker="o" if len(xs) < 3 else None)
        ax.set_title(f"{title} — {path.parent.name}")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if stem == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        target = out / f"{stem}.png"
        fig.savefig(target)
        plt.close(fig)
        written.append(target)
    return written
