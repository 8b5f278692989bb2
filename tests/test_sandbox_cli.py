"""`r1 sandbox doctor` and `r1 sandbox run` through the real command-line entry point."""
from __future__ import annotations

import json

from r1.cli import main


def test_doctor_reports_and_verifies(capsys):
    rc = main(["sandbox", "doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["level"] in ("strong", "partial", "minimal")
    ver = report["verification"]
    assert ver["ok"], ver
    assert rc == 0
    assert ver["checks"]["no host environment"] and ver["checks"]["no_new_privs"]
    if report["level"] == "strong":
        assert ver["checks"]["not root"] and ver["checks"]["network blocked"]
    names = set(report["mechanisms"])
    assert {"pid namespace", "network isolation", "process limit", "memory limit"} <= names


def test_doctor_text_names_the_level(capsys):
    assert main(["sandbox", "doctor", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "isolation level:" in out and "network isolation" in out


def test_run_prints_verdict_json(tmp_path, capsys):
    prog = tmp_path / "prog.py"
    prog.write_text("import sys\nprint(sum(map(int, sys.stdin.read().split())))\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("1 2 3 4\n")
    assert main(["sandbox", "run", str(prog), "--stdin", str(stdin), "--timeout", "5", "--memory-mb", "128"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "ok" and out["stdout"] == "10\n" and out["exit_code"] == 0
    assert out["peak_memory_mb"] > 0 and out["wall_s"] > 0
    assert {"cpu_s", "stderr", "stdout_truncated", "isolation"} <= set(out)


def test_run_reports_time_limit_and_caps_output(tmp_path, capsys):
    prog = tmp_path / "loop.py"
    prog.write_text("print('x' * 5000, flush=True)\nwhile True:\n    pass\n")
    assert main(["sandbox", "run", str(prog), "--timeout", "1", "--show", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "time_limit"
    assert len(out["stdout"]) == 100 and out["stdout_truncated"]


def test_run_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["sandbox", "run", str(tmp_path / "nope.py")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_bad_limit_is_a_clear_error(tmp_path, capsys):
    prog = tmp_path / "p.py"
    prog.write_text("print(1)\n")
    assert main(["sandbox", "run", str(prog), "--memory-mb", "4"]) == 2
    assert "memory_mb" in capsys.readouterr().err
