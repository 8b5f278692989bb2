"""Kill -9 and resume: a run SIGKILLed mid-training (twice) and resumed with --resume writes the same
metrics and ends with the same weights as an uninterrupted run with the same seed (CPU, deterministic)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from train_common import REPO, run_cli, tiny_overrides, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)

STEPS = 14
VOLATILE = ("time", "step_time")  # wall-clock fields; everything else must match exactly


def _args(out: Path, tok: Path) -> list[str]:
    return ["train", "pretrain", *tiny_overrides(out, tok, steps=STEPS, **{"run.save_every": 2, "run.keep_last": 2})]


def _records(out: Path) -> list[dict]:
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs]


def _kill_when(args: list[str], out: Path, step: int, resume: bool) -> None:
    """Start the run, SIGKILL it as soon as it has logged `step` (wherever it is then: mid-step,
    mid-log or mid-checkpoint), and make sure it died by the kill."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "r1.train.cli", *args, *(["--resume"] if resume else [])]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and any(json.loads(line)["step"] >= step for line in metrics.read_text().splitlines()
                                        if line.endswith("}")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before step {step}: {proc.stderr.read()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path, tokenizer_dir):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    r = run_cli(_args(ref, tokenizer_dir))
    assert r.returncode == 0, r.stderr[-3000:]

    _kill_when(_args(killed, tokenizer_dir), killed, step=5, resume=False)
    _kill_when(_args(killed, tokenizer_dir), killed, step=10, resume=True)
    r = run_cli([*_args(killed, tokenizer_dir), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout

    got, want = _records(killed), _records(ref)
    assert [x["step"] for x in got] == list(range(1, STEPS + 1))
    assert got == want  # bit-identical losses, grad norms, lr, expert loads
    wa = load_file(str(ref / "model" / "model.safetensors"))
    wb = load_file(str(killed / "model" / "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert [p.name for p in sorted((killed / "checkpoints").iterdir())] == ["step_00000012", "step_00000014"]
