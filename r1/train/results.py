"""docs/results.md from the pipeline's own records: `r1 pipeline --report`.

Reads RUNS/<recipe>/pipeline.json, each stage's eval.json, the GRPO stages' metrics.jsonl and
the rejection reports; writes one table of every evaluated stage, the R1-Zero style curves
(reward, accuracy, response length over RL steps), the rejection-sampling counts, and a check
of each claim of the recipe issue with the numbers behind it. Nothing in it is typed by hand.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from r1.fileio import atomic_write_text

RECIPES = ("r1-zero", "r1", "distill", "code")
REPRO = "r1-zero-repro"  # a second run of recipes/r1-zero.yaml (`--out runs/r1-zero-repro`), if made
COLUMNS = [("pass@1", "pass@1", "{:.3f}"), ("cons@8", "cons@k", "{:.3f}"), ("format", "format_rate", "{:.3f}"),
           ("language", "language_consistency_rate", "{:.3f}"), ("reasons", "reasoning_rate", "{:.2f}"),
           ("acc. reasoned", "accuracy_reasoned", "{:.3f}"), ("acc. direct", "accuracy_direct", "{:.3f}"),
           ("misread", "misread_rate", "{:.3f}"), ("length", "mean_response_tokens", "{:.0f}")]


def recipe_notes(path: str) -> list[str]:
    """The recipe's own header comment (what it does, what changed and why), quoted: written beside the
    recipe, so the report stays generated from sources alone."""
    p = Path(path)
    if not p.is_file():
        return []
    notes = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        notes.append("> " + line.lstrip("#").strip() if line.strip("# ") else ">")
    return [*notes, ""] if notes else []


def set_label(s: dict) -> str:
    """An eval set in words, from its recorded config (older records lack turns / thinking)."""
    notes = ([] if s["p_canonical"] >= 1 else ["people's phrasing"]) + \
        ([] if s.get("turns", 1) == 1 else [f"turn {s['turns']} of a chat"]) + \
        ([] if s.get("thinking", True) else ["thinking off"])
    return f"{s['task']} d{s['difficulty']}" + (f" ({', '.join(notes)})" if notes else "")


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else spec.format(v)


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_runs(runs: Path) -> dict[str, dict]:
    out = {}
    for name in (*RECIPES, REPRO):
        rec = _load(runs / name / "pipeline.json")
        if rec is None:
            continue
        for st in rec["stages"]:
            folder = runs / name / st["name"]
            st["eval_doc"] = _load(folder / "eval.json")
            st["metrics"] = _metrics(folder / "metrics.jsonl") if st["kind"] == "grpo" else []
            st["report"] = _load(folder / "report.json") if st["kind"] == "rejection" else None
        out[name] = rec
    return out


def _stage(runs: dict, recipe: str, kind: str, which: int = -1) -> dict | None:
    st = [s for s in runs.get(recipe, {}).get("stages", []) if s["kind"] == kind and s.get("eval_doc")]
    return st[which] if st else None


def _common_pass1(a: dict, b: dict) -> tuple[float, float, list[str]] | None:
    """pass@1 of two stages over the eval sets both ran (problem-weighted)."""
    sa, sb = a["eval_doc"]["sets"], b["eval_doc"]["sets"]
    keys = sorted(set(sa) & set(sb))
    if not keys:
        return None

    def avg(s):
        return sum(s[k]["pass@1"] * s[k]["n_problems"] for k in keys) / sum(s[k]["n_problems"] for k in keys)
    return avg(sa), avg(sb), keys


def _paired(runs: dict, name_a: str, name_b: str) -> tuple[float, float, int, float] | None:
    """Mean pass@1 of two eval stages of the r1 recipe over the problems both scored, and the
    standard error of the mean per-problem difference (pairing removes problem difficulty
    from the noise)."""
    stages = {s["name"]: s for s in runs.get("r1", {}).get("stages", []) if s.get("eval_doc")}
    if name_a not in stages or name_b not in stages:
        return None
    pa, pb = stages[name_a]["eval_doc"].get("per_problem", {}), stages[name_b]["eval_doc"].get("per_problem", {})
    pairs = [(pa[k][i], pb[k][i]) for k in pa.keys() & pb.keys() for i in pa[k].keys() & pb[k].keys()]
    if len(pairs) < 2:
        return None
    d = [x - y for x, y in pairs]
    mean_d = sum(d) / len(d)
    se = (sum((v - mean_d) ** 2 for v in d) / (len(d) - 1) / len(d)) ** 0.5
    return sum(x for x, _ in pairs) / len(pairs), sum(y for _, y in pairs) / len(pairs), len(pairs), se


def _stderr(stage: dict, keys: list[str]) -> float:
    """Standard error of the problem-weighted pass@1 over `keys` (independent sets)."""
    sets = stage["eval_doc"]["sets"]
    n = sum(sets[k]["n_problems"] for k in keys)
    return sum((sets[k]["n_problems"] / n * (sets[k].get("pass@1_stderr") or 0)) ** 2 for k in keys) ** 0.5


def claims(runs: dict) -> list[tuple[str, bool | None, str]]:
    """(claim, holds?, the numbers). None = not measured (recipe not run)."""
    out: list[tuple[str, bool | None, str]] = []
    base, zero = _stage(runs, "r1-zero", "pretrain"), _stage(runs, "r1-zero", "grpo")
    if base and zero:
        b, z = base["eval_doc"]["all"], zero["eval_doc"]["all"]
        gain = z["pass@1"] - b["pass@1"]
        out.append(("R1-Zero: held-out pass@1 rises >= 30 points over the base by GRPO alone", gain >= 0.30,
                    f"{b['pass@1']:.3f} -> {z['pass@1']:.3f} (+{100 * gain:.1f} points)"))
        ra, rz = b.get("accuracy_reasoned"), z.get("accuracy_reasoned")
        out.append(("R1-Zero: accuracy of answers given with reasoning rises",
                    None if ra is None or rz is None else rz > ra, f"{_fmt(ra, '{:.3f}')} -> {_fmt(rz, '{:.3f}')}"))
        m = zero["metrics"]
        if len(m) >= 4:
            q = max(1, len(m) // 4)
            first = sum(r["completions/mean_length"] for r in m[:q]) / q
            last = sum(r["completions/mean_length"] for r in m[-q:]) / q
            out.append(("R1-Zero: mean response length grows over RL (first vs last quarter of steps)",
                        last > first, f"{first:.1f} -> {last:.1f} tokens"))
    final = _stage(runs, "r1", "grpo")
    paired = _paired(runs, "compare_r1", "compare_r1_zero")
    if paired:
        a, b, n, se = paired
        out.append(("R1 beats R1-Zero on held-out pass@1 (same problems, each model in its own template)", a > b,
                    f"R1 {a:.3f} vs R1-Zero {b:.3f} on {n} problems: difference {a - b:+.3f}, paired standard "
                    f"error {se:.3f} ({(a - b) / se if se else float('inf'):.1f} standard errors)"))
    elif final and zero:
        c = _common_pass1(final, zero)
        if c:
            se = max(_stderr(final, c[2]), _stderr(zero, c[2]))
            out.append(("R1 beats R1-Zero on held-out pass@1 (common eval sets)", c[0] > c[1],
                        f"R1 {c[0]:.3f} vs R1-Zero {c[1]:.3f} on {', '.join(c[2])} (difference {c[0] - c[1]:+.3f}; "
                        f"standard error of each about {se:.3f})"))
    if final:
        a = final["eval_doc"]["all"]
        out.append(("R1: format compliance >= 99%", a["format_rate"] >= 0.99, f"{a['format_rate']:.4f}"))
        out.append(("R1: language consistency >= 99%", a["language_consistency_rate"] >= 0.99,
                    f"{a['language_consistency_rate']:.4f}"))
    out += chat_claims(runs)
    sft_student = next((s for s in runs.get("distill", {}).get("stages", []) if s["name"] == "student_sft"
                        and s.get("eval_doc")), None)
    rl_student = next((s for s in runs.get("distill", {}).get("stages", []) if s["name"] == "student_rl"
                       and s.get("eval_doc")), None)
    if sft_student and final:
        c = _common_pass1(sft_student, final)
        if c:
            out.append(("Distilled student reaches >= 90% of the teacher's pass@1", c[0] >= 0.9 * c[1],
                        f"student {c[0]:.3f} vs teacher {c[1]:.3f} ({100 * c[0] / max(c[1], 1e-9):.0f}%)"))
    if sft_student and rl_student:
        c = _common_pass1(sft_student, rl_student)
        if c:
            out.append(("Distilled student beats the same student trained by GRPO alone", c[0] > c[1],
                        f"distilled {c[0]:.3f} vs GRPO-only {c[1]:.3f}"))
    code = [s for s in runs.get("code", {}).get("stages", []) if s.get("eval_doc")]
    if code:
        last = code[-1]["eval_doc"]["all"]["pass@1"]
        out.append(("Code: a model trained on the synthetic code family gets non-zero pass@1, graded by running its "
                    "programs on hidden tests in the sandbox", last > 0,
                    "pass@1 " + " -> ".join(f"{s['name']} {s['eval_doc']['all']['pass@1']:.3f}" for s in code)))
    # The r1-zero time is judged on its latest run (the second one, when made, ran the current code).
    zero_runs = [(n, runs[n]["total_s"]) for n in ("r1-zero", REPRO) if n in runs]
    if zero_runs:
        t = zero_runs[-1][1]
        out.append(("Time: the r1-zero recipe finishes in <= 20 minutes (latest run)", t <= 20 * 60,
                    "; ".join(f"runs/{n}: {s / 60:.1f} min" for n, s in reversed(zero_runs))))
    if "r1" in runs:
        total = runs["r1"]["total_s"] + (runs["r1-zero"]["total_s"] if "r1-zero" in runs else 0)
        out.append(("Time: the full r1 recipe (including r1-zero) finishes in <= 60 minutes", total <= 60 * 60,
                    f"{total / 60:.1f} min (r1 stages {runs['r1']['total_s'] / 60:.1f} min + the r1-zero run they "
                    "were trained from)"))
    return out


def chat_claims(runs: dict) -> list[tuple[str, bool | None, str]]:
    """The newcomer's check of the shipped model (stage chat_check: greedy, held-out, chats)."""
    check = next((s for s in runs.get("r1", {}).get("stages", []) if s["name"] == "chat_check"
                  and s.get("eval_doc")), None)
    if not check:
        return []
    out = []
    for key, m in check["eval_doc"]["sets"].items():
        n = m["n_problems"]
        if key.startswith("chitchat") and "/nothink" not in key:
            out.append((f"Chat: every off-domain turn (greeting, thanks, out of scope) is answered in words ({key})",
                        m["pass@1"] == 1.0, f"{round(m['pass@1'] * n)} of {n}"))
        elif "/nothink" in key:
            out.append((f"Thinking off: no reasoning leaks into the answer ({key}; its accuracy is reported, "
                        "not claimed)", m["leak_rate"] == 0.0,
                        f"leaked {round(m['leak_rate'] * n)} of {n}; pass@1 {m['pass@1']:.3f}"))
        else:
            out.append((f"Chat: >= 90% of arithmetic turns right, greedy ({key})", m["pass@1"] >= 0.9,
                        f"{round(m['pass@1'] * n)} of {n} ({m['pass@1']:.3f}); reasoned about other numbers: "
                        f"{_fmt(m.get('misread_rate'), '{:.3f}')}"))
    return out


def plot_grpo(stage: dict, path: Path, title: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = stage["metrics"]
    if not m:
        return None
    steps = [r["step"] for r in m]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, label in zip(axes, ("reward", "accuracy", "completions/mean_length"),
                              ("mean reward", "training accuracy", "mean response length (tokens)")):
        ax.plot(steps, [r.get(key) for r in m], color="tab:blue")
        ax.set_xlabel("RL step")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def render(runs: dict, docs: Path) -> str:
    lines = ["# Results: the R1 recipe on a laptop CPU", "",
             "Generated by `r1 pipeline --report` from the runs' own records (`runs/*/pipeline.json`, each stage's "
             "`eval.json` and `metrics.jsonl`); do not edit by hand.", ""]
    for name, rec in runs.items():
        if name == REPRO:
            continue
        suite = next((s["eval_doc"]["suite"] for s in rec["stages"] if s.get("eval_doc")), None)
        lines += [f"## {name}", "", f"Recipe `{rec['path']}`; stage time total {rec['total_s'] / 60:.1f} min.", ""]
        lines += recipe_notes(rec["path"])
        if suite:
            sets = ", ".join(set_label(s) for s in suite["sets"])
            lines += [f"Held-out eval: test split, {suite['limit']} problems per set ({sets}), k={suite['k']} samples "
                      f"at temperature {suite['temperature']}, top-p {suite['top_p']}, max {suite['max_tokens']} tokens; "
                      "the prompt template of each stage's eval is in the table.", ""]
        head = "| stage | kind | template | " + " | ".join(c[0] for c in COLUMNS) + " | time (s) |"
        lines += [head, "|" + "---|" * (len(COLUMNS) + 4)]
        for st in rec["stages"]:
            a = st["eval_doc"]["all"] if st.get("eval_doc") else {}
            tpl = st["eval_doc"]["suite"]["template"] if st.get("eval_doc") else "–"
            cells = [_fmt(a.get(k), f) for _, k, f in COLUMNS]
            lines.append(f"| {st['name']} | {st['kind']} | {tpl} | " + " | ".join(cells)
                         + f" | {st.get('elapsed_s', 0):.0f} |")
        lines.append("")
        for st in rec["stages"]:
            if st.get("eval_doc") and len(st["eval_doc"]["sets"]) > 1:
                lines += [f"Per set, `{st['name']}`: " + "; ".join(
                    f"{k} {v['pass@1']:.3f}" for k, v in st["eval_doc"]["sets"].items()), ""]
            if st["kind"] == "grpo":
                png = plot_grpo(st, docs / "results" / f"{name}-{st['name']}.png", f"{name} / {st['name']}")
                if png:
                    lines += [f"![{name} {st['name']} curves](results/{png.name})", ""]
            if st.get("report"):
                t = st["report"]["totals"]
                drops = ", ".join(f"{k.removeprefix('dropped_')} {v}" for k, v in t.items() if k.startswith("dropped_"))
                lines += [f"Rejection sampling `{st['name']}`: {t.get('kept', 0)} of {t.get('samples', 0)} samples "
                          f"kept; dropped: {drops}.", ""]
    if REPRO in runs and "r1-zero" in runs:
        lines += ["## Reproducibility: a second run of the r1-zero recipe", "",
                  "`r1 pipeline recipes/r1-zero.yaml --out runs/r1-zero-repro`: same seeds, fresh run folder. The "
                  "second run may be made later, on newer code: a faster kernel rounds floats differently and so "
                  "draws other samples, so agreement within the standard error is what to expect, not identity.", "",
                  "| stage | pass@1 (run 1) | pass@1 (run 2) | difference | stderr (run 1) | time run 1 (s) | time run 2 (s) |",
                  "|---|---|---|---|---|---|---|"]
        second = {st["name"]: st for st in runs[REPRO]["stages"]}
        for st in runs["r1-zero"]["stages"]:
            other = second.get(st["name"])
            if not (st.get("eval_doc") and other and other.get("eval_doc")):
                continue
            a, b = st["eval_doc"]["all"]["pass@1"], other["eval_doc"]["all"]["pass@1"]
            err = [m["pass@1_stderr"] for m in st["eval_doc"]["sets"].values() if m.get("pass@1_stderr") is not None]
            se = (sum(e * e for e in err) ** 0.5 / len(err)) if err else None
            lines.append(f"| {st['name']} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {_fmt(se, '{:.3f}')} | "
                         f"{st.get('elapsed_s', 0):.0f} | {other.get('elapsed_s', 0):.0f} |")
        lines.append("")
    lines += ["## Claims", "", "| claim | holds | numbers |", "|---|---|---|"]
    for claim, ok, nums in claims(runs):
        lines.append(f"| {claim} | {'yes' if ok else 'not measured' if ok is None else 'NO'} | {nums} |")
    lines.append("")
    return "\n".join(lines)


# The claims each recipe's records support, by the start of the claim's text: what a carried-over
# section brings along from the previous report.
CLAIMS_OF = {"distill": ("Distilled student",), "code": ("Code:",)}
CARRIED = "*Carried over from the previous docs/results.md: this recipe was not rerun for this report.*"


def carry_over(new: str, old: str, ran: set[str]) -> str:
    """`new` with the sections (and claim rows) of recipes that have no runs here taken from `old`, marked
    as carried: a report made on a machine that reran only some recipes keeps the others' measured results
    instead of dropping them."""
    def section(text: str, name: str) -> str | None:
        m = re.search(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", text, re.S | re.M)
        return m.group(0) if m else None

    carried, rows = [], []
    for name in RECIPES:
        if name in ran or not (sec := section(old, name)):
            continue
        if CARRIED not in sec:
            sec = sec.replace("\n\n", f"\n\n{CARRIED}\n\n", 1)
        carried.append(sec.rstrip() + "\n\n")
        rows += [r if r.endswith("(carried over) |") else r.removesuffix(" |") + " (carried over) |"
                 for r in old.splitlines() if r.startswith(tuple(f"| {c}" for c in CLAIMS_OF.get(name, ())))]
    if not carried:
        return new
    head, claims = new.split("## Claims\n", 1) if "## Claims\n" in new else (new, "")
    claims = claims.rstrip("\n") + "\n" + "\n".join(rows) + "\n" if rows else claims
    return head + "".join(carried) + "## Claims\n" + claims


def write_report(runs: Path, docs: Path) -> Path:
    data = load_runs(runs)
    if not data:
        raise SystemExit(f"no pipeline runs under {runs} (expected {', '.join(f'{runs}/{r}/pipeline.json' for r in RECIPES)})")
    out = docs / "results.md"
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    return atomic_write_text(out, carry_over(render(data, docs), old, set(data)))
