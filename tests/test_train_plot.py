"""`r1 plot RUN_DIR`: metrics JSONL -> one PNG per metric family (loss, reward, accuracy, length, KL, ...)."""
from __future__ import annotations

import json
import math

from r1.train.logging import MetricsLogger, read_metrics
from r1.train.plot import series
from train_common import cli
from train_common import one_thread  # noqa: F401  (autouse fixture)


def _write_run(run):
    with MetricsLogger(run) as log:
        for s in range(1, 21):
            log.log(s, loss=3 - s / 10, lm_loss=2.9 - s / 10, eval_loss=3.1 - s / 12, reward=s / 20,
                    **{"rewards/accuracy/mean": s / 25, "completions/mean_length": 40 + s, "accuracy": s / 20,
                       "kl": s * 1e-3, "lr": 1e-3, "grad_norm": 1.0, "moe_imbalance/layer1": 2 - s / 20,
                       "moe_imbalance": 2 - s / 20, "note": "text is skipped", "bad": float("nan")})


def test_plot_cli_writes_a_png_per_family(tmp_path, capsys):
    _write_run(tmp_path)
    rc, out, err = cli(["plot", str(tmp_path)], capsys)
    assert rc == 0, err
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == sorted(["balance.png", "loss.png", "reward.png", "accuracy.png", "length.png", "kl.png",
                              "lr.png", "grad_norm.png"])
    for name in written:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert out.split() == [str(tmp_path / "plots" / n) for n in
                                ["balance.png", "loss.png", "reward.png", "accuracy.png", "length.png", "kl.png",
                                 "lr.png", "grad_norm.png"]]


def test_metrics_file_survives_torn_lines_and_resume(tmp_path):
    _write_run(tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "loss": 1.')  # what a SIGKILL mid-write leaves
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == list(range(1, 21)) and recs[0]["bad"] == "nan"
    s = series(recs)
    assert "note" not in s and "bad" not in s and s["kl"][0][:3] == [1, 2, 3]
    # A resumed run keeps the records up to its checkpoint and drops the rest (and the torn line).
    MetricsLogger(tmp_path, resume_step=12).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == list(range(1, 13))
    assert all(json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())
    assert not math.isnan(read_metrics(tmp_path)[-1]["loss"])


def test_plot_errors_clearly(tmp_path, capsys):
    rc, out, err = cli(["plot", str(tmp_path)], capsys)
    assert rc == 2 and "no metrics file" in err
