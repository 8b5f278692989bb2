"""Programming problems from a JSONL file the user brings: LiveCodeBench, Codeforces /
code_contests, APPS/TACO style. Each line becomes a `code` Problem graded by `r1.tasks.code`.

Recognised fields (first match wins):
  statement   question_content, problem, question, description, statement, prompt
  title / id  question_title, title, name / question_id, problem_id, task_id, id
  tests       public_test_cases + private_test_cases (LiveCodeBench), public_tests + private_tests
              + generated_tests (code_contests), tests / test_cases, input_output (APPS)
  functional  starter_code (LeetCode-style `class Solution`), fn_name (APPS); else stdin/stdout
  limits      time_limit (seconds, or {"seconds", "nanos"}), memory_limit_bytes / memory_limit (MB)

A test is {"input", "output"} (or parallel "input"/"output" lists, or APPS "inputs"/"outputs").
LiveCodeBench ships private tests as base64(zlib(pickle(json))). They are read with an
unpickler that refuses every global, so only str/bytes/list/dict can come out: no object of
the file's choosing is ever constructed.
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

from r1.tasks.base import Problem

STATEMENT_FIELDS = ("question_content", "problem", "question", "description", "statement", "prompt")
TITLE_FIELDS = ("question_title", "title", "name")
ID_FIELDS = ("question_id", "problem_id", "task_id", "id", "name")
TEST_FIELDS = ("public_test_cases", "private_test_cases", "public_tests", "private_tests", "generated_tests",
               "tests", "test_cases", "input_output")
DEFAULT_TIMEOUT_S = 6.0   # LiveCodeBench's per-test timeout for Python
DEFAULT_MEMORY_MB = 512
# LiveCodeBench's functional harness imports these before the solution; LeetCode does too.
PRELUDE = ("from typing import *\nfrom collections import *\nfrom functools import *\nfrom itertools import *\n"
           "from heapq import *\nfrom bisect import *\nimport math, string, re, collections, heapq, bisect, itertools\n\n")
STDIN_INSTRUCTION = ("Read the input from standard input and write the answer to standard output. "
                     "Put the complete program in a single ```python code block at the end of your answer.")
STARTER_INSTRUCTION = ("Complete the following starter code. Put the complete solution in a single ```python "
                       "code block at the end of your answer.")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ARG002 - the refusal is the point
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test file")


def _decode_blob(text: str) -> Any:
    """LiveCodeBench's compressed test format, decoded without running anything."""
    raw = zlib.decompress(base64.b64decode(text))
    value = _NoGlobals(io.BytesIO(raw)).load()
    if isinstance(value, bytes):
        value = value.decode()
    return json.loads(value) if isinstance(value, str) else value


def _as_value(field: str, value: Any) -> Any:
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        if s[0] in "[{":
            return json.loads(s)
        try:
            return _decode_blob(s)
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as e:
            raise ValueError(f"field {field!r}: neither JSON nor LiveCodeBench's compressed format ({e})") from None
    return value


def _tests_of(field: str, value: Any) -> list[dict]:
    """Normalise one test field to [{"input", "output", "testtype"?}]."""
    value = _as_value(field, value)
    if isinstance(value, dict):
        ins = value.get("input", value.get("inputs"))
        outs = value.get("output", value.get("outputs"))
        if not isinstance(ins, list) or not isinstance(outs, list) or len(ins) != len(outs):
            raise ValueError(f"field {field!r}: expected parallel 'input'/'output' lists of the same length")
        return [{"input": i, "output": o} for i, o in zip(ins, outs)]
    if isinstance(value, list):
        for t in value:
            if not isinstance(t, dict) or "input" not in t or "output" not in t:
                raise ValueError(f"field {field!r}: every test needs 'input' and 'output', got {str(t)[:80]}")
        return list(value)
    raise ValueError(f"field {field!r}: expected a list of tests or input/output lists, got {type(value).__name__}")


def _method_name(starter: str) -> str | None:
    m = re.search(r"^\s+def\s+(\w+)\s*\(\s*self", starter, re.M) or re.search(r"^def\s+(\w+)\s*\(", starter, re.M)
    return m.group(1) if m else None


def _functional_case(t: dict, apps: bool) -> dict:
    if apps:  # APPS: inputs already a list of arguments; outputs often wrapped in a 1-list
        args, out = t["input"], t["output"]
        if isinstance(out, list) and len(out) == 1:
            out = out[0]
        return {"input": json.dumps(args), "output": json.dumps(out)}
    # LiveCodeBench: one JSON value per line of "input", one JSON value in "output".
    args = [json.loads(line) for line in str(t["input"]).splitlines() if line.strip()]
    return {"input": json.dumps(args), "output": json.dumps(json.loads(str(t["output"])))}


def _seconds(value: Any) -> float | None:
    if isinstance(value, dict):  # code_contests: {"seconds": 2, "nanos": 500000000}
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9 or None
    if isinstance(value, (int, float)) and value > 0:
        return float(value) / 1000 if value > 100 else float(value)  # > 100 can only be milliseconds
    return None


def problem_from_record(rec: dict, where: str = "record") -> Problem:
    statement = next((rec[f] for f in STATEMENT_FIELDS if isinstance(rec.get(f), str) and rec[f].strip()), None)
    if statement is None:
        raise ValueError(f"{where}: no problem statement (looked for {', '.join(STATEMENT_FIELDS)})")
    title = next((str(rec[f]) for f in TITLE_FIELDS if rec.get(f)), "")
    pid = next((str(rec[f]) for f in ID_FIELDS if rec.get(f) not in (None, "")), where)
    apps_io = rec.get("input_output")
    fn_name = None
    if apps_io:
        apps_io = _as_value("input_output", apps_io)
        fn_name = apps_io.get("fn_name") if isinstance(apps_io, dict) else None
    tests: list[dict] = []
    for field in TEST_FIELDS:
        if rec.get(field) not in (None, "", [], {}):
            tests += _tests_of(field, apps_io if field == "input_output" else rec[field])
    if not tests:
        raise ValueError(f"{where}: no tests (looked for {', '.join(TEST_FIELDS)})")
    starter = rec.get("starter_code") or ""
    functional = bool(fn_name) or any(t.get("testtype") == "functional" for t in tests)
    call = None
    if functional:
        name = fn_name or _method_name(starter)
        if name is None:
            raise ValueError(f"{where}: functional tests but no function name in starter_code or fn_name")
        call = f"Solution().{name}" if "class Solution" in starter else name
        tests = [_functional_case(t, apps=bool(fn_name)) for t in tests]
    else:
        tests = [{"input": str(t["input"]), "output": str(t["output"])} for t in tests]
    prompt = (f"{title}\n\n" if title and title not in statement[:200] else "") + statement.strip()
    prompt += f"\n\n{STARTER_INSTRUCTION}\n```python\n{starter.rstrip()}\n```" if starter.strip() else f"\n\n{STDIN_INSTRUCTION}"
    memory = rec.get("memory_limit_bytes")
    memory_mb = int(memory) // (1 << 20) if isinstance(memory, (int, float)) and memory > 0 else rec.get("memory_limit")
    meta = {
        "call": call,
        "tests": tests,
        "prelude": PRELUDE if functional else "",
        "timeout_s": _seconds(rec.get("time_limit")) or DEFAULT_TIMEOUT_S,
        "memory_mb": max(64, int(memory_mb)) if isinstance(memory_mb, (int, float)) and memory_mb > 0 else DEFAULT_MEMORY_MB,
        "title": title,
        "difficulty": str(rec.get("difficulty", "")),
        "platform": str(rec.get("platform", rec.get("source", ""))),
        "source": where,
    }
    return Problem(task="code", prompt=prompt, answer="", meta=meta, id=pid)


def looks_like_code(path: str | Path) -> bool:
    """Does the first record of this JSONL file carry tests (a code file, not a math one)?"""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                return isinstance(rec, dict) and any(rec.get(k) not in (None, "", [], {}) for k in TEST_FIELDS)
    return False


def load_jsonl(path: str | Path, limit: int | None = None) -> list[Problem]:
    """Problems from `path`, one per non-empty line; a bad line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file at {path}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    problems: list[Problem] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: each line must be a JSON object")
            problems.append(problem_from_record(rec, where))
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise ValueError(f"{path}: no problems in the file")
    return problems
