"""Shared pieces of the tests/test_train_*.py files: a tiny BPE tokenizer trained once per session
and the config overrides of a tiny, fast pretraining run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from r1.tasks.datasets import pretraining_text
    from r1.train.tokenizer_train import save_tokenizer, train_bpe

    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_bpe(pretraining_text(["arithmetic", "sorting"], 200), vocab_size=384), folder)
    return folder


def tiny_overrides(out_dir: Path, tok: Path, steps: int = 6, **kw) -> list[str]:
    """A tiny DeepSeek-V3 (MLA + MoE + MTP) on a small generated corpus: seconds per run on 2 cores."""
    base = {
        "run.out_dir": str(out_dir), "run.max_steps": steps, "run.save_every": 0, "run.progress": False,
        "run.deterministic": True, "data.tokenizer": str(tok), "data.tasks": "[arithmetic]",
        "data.n_per_task": 150, "data.seq_len": 32, "data.batch_size": 8, "data.eval_fraction": 0.0,
        "model.overrides": "{hidden_size: 32, intermediate_size: 64, moe_intermediate_size: 16, kv_lora_rank: 16}",
        "optim.lr": 3e-3, "optim.warmup_steps": 2,
    }
    base.update(kw)
    return [f"{k}={v}" for k, v in base.items()]


def tiny_config(out_dir: Path, tok: Path, steps: int = 6, **kw):
    from r1.train.config import load_config
    from r1.train.pretrain import PretrainConfig

    return load_config(PretrainConfig, None, tiny_overrides(out_dir, tok, steps, **kw))


def run_cmd(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; on timeout the whole group is killed (torchrun's workers too)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd[:6])}... timed out after {timeout}s\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cmd([sys.executable, "-m", "r1.train.cli", *args], timeout)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a 2-core machine: one intra-op thread is faster than two fighting over the cores
    with the other tests' processes. Restored afterwards, so no test sees another's setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`r1 <args>` in-process (the same parser as the `r1` entry point gets), with its output."""
    from r1.train.cli import main

    capsys.readouterr()
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err
