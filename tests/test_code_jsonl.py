"""LiveCodeBench / Codeforces-style JSONL problems: loading every supported shape, grading
stdin programs and LeetCode-style methods, and refusing malicious test blobs."""
from __future__ import annotations

import base64
import json
import os
import pickle
import zlib

import pytest

from r1.sandbox import Verdict
from r1.tasks import code
from r1.tasks.code_jsonl import load_jsonl, looks_like_code, problem_from_record


def _lcb_blob(obj) -> str:
    # LiveCodeBench's private-test encoding: base64(zlib(pickle(json string))).
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(obj)))).decode()


LCB_STDIN = {
    "question_title": "A+B", "question_content": "Read two integers and print their sum.",
    "platform": "atcoder", "question_id": "abc000_a", "difficulty": "easy", "starter_code": "",
    "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
    "private_test_cases": _lcb_blob([{"input": "10 -4\n", "output": "6\n", "testtype": "stdin"},
                                     {"input": "0 0\n", "output": "0\n", "testtype": "stdin"}]),
}
LCB_FUNCTIONAL = {
    "question_title": "Max Profit", "question_content": "Given prices, return the best single trade profit.",
    "platform": "leetcode", "question_id": "121", "difficulty": "easy",
    "starter_code": "class Solution:\n    def maxProfit(self, prices: List[int]) -> int:\n        ",
    "public_test_cases": json.dumps([{"input": "[7,1,5,3,6,4]", "output": "5", "testtype": "functional"}]),
    "private_test_cases": json.dumps([{"input": "[7,6,4,3,1]", "output": "0", "testtype": "functional"},
                                      {"input": "[1,2]", "output": "1", "testtype": "functional"}]),
}
CODE_CONTESTS = {
    "name": "1000A. Double", "description": "Print twice the number n.",
    "public_tests": {"input": ["3\n"], "output": ["6\n"]},
    "private_tests": {"input": ["5\n", "0\n"], "output": ["10\n", "0\n"]},
    "generated_tests": {"input": [], "output": []},
    "time_limit": {"seconds": 2, "nanos": 0}, "memory_limit_bytes": 268435456,
}
APPS_FN = {
    "problem_id": 7, "question": "Return the square of n.",
    "input_output": json.dumps({"fn_name": "square", "inputs": [[2], [3]], "outputs": [[4], [9]]}),
}


def _write(tmp_path, records) -> str:
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return str(path)


def test_loads_all_shapes(tmp_path):
    path = _write(tmp_path, [LCB_STDIN, LCB_FUNCTIONAL, CODE_CONTESTS, APPS_FN])
    assert looks_like_code(path)
    stdin, func, cc, apps = load_jsonl(path)
    assert stdin.task == "code" and stdin.id == "abc000_a" and stdin.meta["call"] is None
    assert len(stdin.meta["tests"]) == 3  # public + decoded private
    assert "standard input" in stdin.prompt
    assert func.meta["call"] == "Solution().maxProfit" and "class Solution" in func.prompt
    assert json.loads(func.meta["tests"][0]["input"]) == [[7, 1, 5, 3, 6, 4]]
    assert cc.meta["timeout_s"] == 2.0 and cc.meta["memory_mb"] == 256 and len(cc.meta["tests"]) == 3
    assert apps.meta["call"] == "square" and json.loads(apps.meta["tests"][1]["output"]) == 9
    assert load_jsonl(path, limit=2)[1].id == "121"


def test_graded_in_the_sandbox(tmp_path):
    stdin, func, cc = load_jsonl(_write(tmp_path, [LCB_STDIN, LCB_FUNCTIONAL, CODE_CONTESTS]))
    add = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    profit = ("```python\nclass Solution:\n    def maxProfit(self, prices: List[int]) -> int:\n"
              "        best, low = 0, float('inf')\n        for p in prices:\n            low = min(low, p)\n"
              "            best = max(best, p - low)\n        return best\n```")
    double = "```python\nprint(2 * int(input()))\n```"
    wrong = "```python\nprint(2 * int(input()) + 1)\n```"
    results = code.grade_many([add, profit, double, wrong], [stdin, func, cc, cc])
    assert [r.all_passed for r in results] == [True, True, True, False]
    assert results[3].cases[0].verdict is Verdict.WRONG_ANSWER


def test_refuses_pickled_objects(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    blob = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    rec = dict(LCB_STDIN, private_test_cases=blob)
    with pytest.raises(ValueError, match="private_test_cases"):
        problem_from_record(rec, "evil.jsonl:1")
    assert not marker.exists()


@pytest.mark.parametrize("record, message", [
    ({"tests": [{"input": "1", "output": "1"}]}, "no problem statement"),
    ({"question": "Do it."}, "no tests"),
    ({"question": "Do it.", "tests": [{"input": "1"}]}, "'input' and 'output'"),
    ({"question": "Do it.", "public_tests": {"input": ["1"], "output": []}}, "same length"),
    ({"question": "Do it.", "private_test_cases": "%%%not-base64%%%"}, "neither JSON"),
    ({"question": "Do it.", "tests": [{"input": "[1]", "output": "1", "testtype": "functional"}]}, "function name"),
])
def test_bad_records_name_the_problem(record, message):
    with pytest.raises(ValueError, match=message):
        problem_from_record(record, "bad.jsonl:3")


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "tests": []}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_jsonl(bad)
    math_file = tmp_path / "math.jsonl"
    math_file.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n")
    assert not looks_like_code(math_file)
