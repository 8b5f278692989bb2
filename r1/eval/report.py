"""Result files: the JSON document, a markdown table, side-by-side comparison, and plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from r1.fileio import atomic_write_text

REQUIRED_METRICS = ("pass@1", "cons@k", "pass@k", "k")

# (header, metric key, format). cons@k / pass@k headers show the actual k, as papers print them.
COLUMNS: list[tuple[str, str, str]] = [
    ("pass@1", "pass@1", "{:.3f}"),
    ("cons@{k}", "cons@k", "{:.3f}"),
    ("pass@{k}", "pass@k", "{:.3f}"),
    ("format", "format_rate", "{:.2f}"),
    ("lang", "language_consistency_rate", "{:.2f}"),
    ("resp tok", "mean_response_tokens", "{:.0f}"),
    ("think tok", "mean_reasoning_tokens", "{:.0f}"),
    ("n", "n_problems", "{:d}"),
]


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write atomically (temp file + rename), so an interrupted run never leaves half a file."""
    return atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False) + "\n")


def load_result(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no result file at {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a JSON result file ({e.msg} at line {e.lineno})") from None
    metrics = doc.get("metrics") if isinstance(doc, dict) else None
    missing = [m for m in REQUIRED_METRICS if not isinstance(metrics, dict) or m not in metrics]
    if missing:
        raise ValueError(f"{path}: not an `r1 eval` result (metrics missing: {', '.join(missing)})")
    return doc


def _cell(metrics: dict[str, Any], key: str, fmt: str) -> str:
    v = metrics.get(key)
    if v is None:
        return "-"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _row_label(doc: dict[str, Any]) -> tuple[str, str]:
    model = Path(str(doc.get("model", "?"))).name
    cfg = doc.get("config", {})
    task = Path(str(doc.get("task", "?"))).name
    if cfg.get("difficulty", 1) != 1 and not str(doc.get("task", "")).endswith(".jsonl"):
        task += f" d{cfg['difficulty']}"
    return model, task


def table_rows(docs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    ks = sorted({d["metrics"]["k"] for d in docs})
    mixed = len(ks) > 1
    header = ["model", "task"] + [h.format(k="k" if mixed else ks[0]) for h, _, _ in COLUMNS]
    rows = []
    for d in docs:
        model, task = _row_label(d)
        if mixed:  # say which k each row used
            task += f" (k={d['metrics']['k']})"
        rows.append([model, task] + [_cell(d["metrics"], key, fmt) for _, key, fmt in COLUMNS])
    return header, rows


def markdown_table(docs: Sequence[dict[str, Any]]) -> str:
    header, rows = table_rows(docs)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown_report(doc: dict[str, Any]) -> str:
    m, cfg = doc["metrics"], doc.get("config", {})
    ladder = ", ".join(f"pass@{j} {v:.3f}" for j, v in m.get("pass@j", {}).items() if v is not None)
    settings = (f"k={m['k']}, temperature={cfg.get('temperature')}, top_p={cfg.get('top_p')}, "
                f"max_tokens={cfg.get('max_tokens')}, template={cfg.get('template')}, split={cfg.get('split')}, "
                f"seed={cfg.get('seed')}")
    note = f" ({doc['max_tokens_note']})" if doc.get("max_tokens_note") else ""
    return (f"# Evaluation: {_row_label(doc)[0]} on {doc.get('task')}\n\n{markdown_table([doc])}\n"
            f"Settings: {settings}{note}.\n\nUnbiased pass@j: {ladder}.\n")


def print_table(docs: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(docs)
    table = Table(*header)
    for r in rows:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # piped into a file or CI log: don't squeeze to 80 columns
        console = Console(width=200)
    console.print(table)


def plot_accuracy_vs_length(docs: Sequence[dict[str, Any]], path: str | Path, bins: int = 8) -> Path:
    """Accuracy against response length: samples are binned by length (equal-count bins)
    and each bin's mean accuracy is plotted at its mean length, one line per result."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for doc in docs:
        pts = sorted((s["response_tokens"], float(s["correct"])) for p in doc["problems"] for s in p["samples"])
        if not pts:
            continue
        nb = max(1, min(bins, len(pts)))
        xs, ys = [], []
        for b in range(nb):
            chunk = pts[b * len(pts) // nb:(b + 1) * len(pts) // nb]
            if chunk:
                xs.append(sum(x for x, _ in chunk) / len(chunk))
                ys.append(sum(y for _, y in chunk) / len(chunk))
        model, task = _row_label(doc)
        ax.plot(xs, ys, marker="o", label=f"{model} / {task}")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("accuracy (share of samples correct)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy vs response length")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
