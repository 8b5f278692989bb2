"""Pieces of the sandbox that need no sandboxed process: validation, checkers, harness text,
the seccomp program, host probing helpers."""
from __future__ import annotations

import json
import os
import struct
import tempfile

import pytest

from r1.sandbox import Limits, SandboxConfig, Verdict
from r1.sandbox import cgroups, harness, probe, seccomp
from r1.sandbox.compare import compare_output, compare_values


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout_s": 0}, "timeout_s"),
    ({"cpu_s": -1}, "cpu_s"),
    ({"memory_mb": 8}, "memory_mb"),
    ({"max_processes": 0}, "max_processes"),
    ({"max_output_bytes": 0}, "max_output_bytes"),
    ({"max_open_files": 3}, "max_open_files"),
])
def test_limits_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)


def test_limits_cpu_defaults_to_timeout():
    assert Limits(timeout_s=3).cpu_limit_s == 3
    assert Limits(timeout_s=3, cpu_s=1).cpu_limit_s == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"python": "python3"}, "absolute path"),
    ({"require": "paranoid"}, "require"),
    ({"uid_range": (1000, 2000)}, "65536"),
    ({"uid_range": (70000, 60000)}, "uid_range"),
    ({"tmp_root": "/nonexistent/dir"}, "tmp_root"),
    ({"env": {"A=B": "1"}}, "env"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SandboxConfig(**kwargs)


def test_default_env_carries_nothing_from_the_host(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    cfg = SandboxConfig()
    assert "OPENAI_API_KEY" not in cfg.env and "HOME" not in cfg.env


@pytest.mark.parametrize("actual, expected, ok", [
    ("3\n", "3", True),
    ("3  \n\n\n", "3\n", True),
    ("1 2\r\n3\r\n", "1 2\n3\n", True),
    ("1   2\n", "1 2\n", True),
    ("0.3333333\n", "0.33333333", True),
    ("0.34\n", "0.33", False),
    ("1\n2\n", "1\n2\n3\n", False),      # truncated: every expected line is compared
    ("1\n2\n3\n4\n", "1\n2\n3\n", False),
    ("", "0", False),
    ("nan", "nan", True),                 # same text is the same answer
    ("abc", "abd", False),
    ("YES", "yes", False),
])
def test_compare_output(actual, expected, ok):
    assert compare_output(actual, expected) is ok


def test_compare_output_exact_mode():
    assert not compare_output("0.3333333", "0.33333333", float_tol=None)


@pytest.mark.parametrize("actual, expected, ok", [
    ([1, 2], [1, 2], True),
    ((1, 2), [1, 2], True),
    ([1, 2], [1, 2, 3], False),
    ([1, 2, 3], [1, 2], False),
    (1.0000000001, 1.0, True),
    (1, 1.0, True),
    (True, 1, False),
    (1, True, False),
    ({"a": [1]}, {"a": [1]}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ("x", "x", True),
    (None, None, True),
    (None, 0, False),
])
def test_compare_values(actual, expected, ok):
    assert compare_values(actual, expected) is ok


def test_harness_embeds_source_safely():
    nasty = "x = '_main(__SOURCE__, __CALL__, __PER_CASE_S__)'\n\"\"\"'''\ndef f():\n    return x\n"
    prog = harness.function_program(nasty, "f", 1.0)
    compile(prog, "harness.py", "exec")  # still valid Python
    assert prog.count(repr(nasty)) == 1


def test_harness_rejects_bad_arguments():
    with pytest.raises(ValueError, match="call"):
        harness.function_program("def f(): pass", " ", 1.0)
    with pytest.raises(ValueError, match="per_case_s"):
        harness.function_program("def f(): pass", "f", 0)


def test_parse_results_pads_and_tolerates_garbage():
    out = json.dumps({"ok": 1}) + "\nnot json\n"
    recs = harness.parse_results(out, 3)
    assert recs[0] == {"ok": 1}
    assert recs[1]["verdict"] == "runtime_error"
    assert recs[2] is None


def test_seccomp_program_shape():
    code = seccomp.build_filter()
    if not seccomp.supported():
        assert code is None
        return
    assert code is not None and len(code) % 8 == 0
    n = len(code) // 8
    assert n < 4096  # BPF_MAXINSNS
    insns = [struct.unpack("=HBBI", code[i * 8:(i + 1) * 8]) for i in range(n)]
    # Every jump lands inside the program, and the last instruction returns.
    for i, (op, jt, jf, _) in enumerate(insns):
        if op & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < n
    assert insns[-1][0] == 0x06


def test_verdict_is_json_friendly():
    assert json.dumps({"v": Verdict.PASSED}) == '{"v": "passed"}'
    assert str(Verdict.TIME_LIMIT) == "time_limit"


def test_blocked_groups_finds_private_ancestors():
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o755)
        if probe.blocked_groups([base]):
            pytest.skip(f"the system temp dir {tempfile.gettempdir()} is itself below a private directory")
        private = os.path.join(base, "home")
        needed = os.path.join(private, "py", "lib")
        os.makedirs(needed)
        os.chmod(private, 0o700)
        assert probe.blocked_groups([needed]) == [(private, [needed])]
        os.chmod(private, 0o755)
        assert probe.blocked_groups([needed]) == []


def test_levels_order():
    assert probe.meets("strong", "minimal") and probe.meets("partial", "partial")
    assert not probe.meets("minimal", "partial")


def test_cgroup_detection_answers_either_way():
    layout, why = cgroups.detect()
    assert isinstance(why, str) and why
    if layout is not None:
        assert set(layout.parents) <= set(cgroups.CONTROLLERS)
        assert all(os.path.isdir(p) for p in layout.parents.values())


def test_cgroup_layout_validation():
    with pytest.raises(ValueError, match="version"):
        cgroups.CgroupLayout(3, {})
    with pytest.raises(ValueError, match="unsupported"):
        cgroups.CgroupLayout(1, {"cpu": "/sys/fs/cgroup/cpu"})
