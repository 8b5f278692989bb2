"""The loopback load test (bench/serve_load.py) as a check: 64 concurrent streaming clients for a
bounded time through `r1 serve` in a subprocess, then 200 mid-stream disconnects."""
import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve_load.py"


def test_64_clients_then_200_disconnects(tmp_path):
    spec = importlib.util.spec_from_file_location("serve_load", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "serve_load.json"
    code = bench.main(["--clients", "64", "--duration", "20", "--rounds", "2", "--disconnects", "200",
                       "--out", str(out)])
    res = json.loads(out.read_text())
    for r in res["rounds"]:
        assert r["errors"] == 0, r["error_samples"]  # only deliberate 429s beyond the queue bound
        assert r["ok"] > 0
    assert sum(r["429"] for r in res["rounds"]) > 0  # 64 clients > batch 16 + queue 32: some are shed
    d = res["disconnect"]
    assert d["dropped"] + d["429"] == 200 and d["errors"] == 0
    assert d["kv_usage_zero_after_s"] is not None and d["fresh_status"] == 200 and d["kv_usage_after_fresh"] == 0
    assert d["aborted_499"] >= d["dropped"]
    assert res["checks"]["memory_flat"], [r["rss_after_mb"] for r in res["rounds"]]
    assert res["clean_shutdown"], res.get("server_log_tail")
    assert code == 0
