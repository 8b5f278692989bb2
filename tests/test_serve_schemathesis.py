"""Schemathesis against the app's own OpenAPI schema, positive and negative data: no 500s, every
status documented, invalid data rejected, and no request hangs (each has a timeout)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, tiny_engine

pytestmark = pytest.mark.slow
MODEL = "m"

# The schema names the served model as an enum of `model` (create_app's openapi()), so positive cases
# reach the engine and negative ones (a model not in the enum) must get their 404.


def test_schemathesis_finds_no_server_errors(tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is not installed")
    # short context: positive cases generate at most ~100 tokens, so the run is bounded by checks
    app = create_app(tiny_engine(max_model_len=128, max_waiting=256), model_name=MODEL)
    env = dict(os.environ)
    with LiveServer(app) as s:
        proc = subprocess.run(
            [st, "run", f"{s.url}/openapi.json", "--mode", "all", "--max-examples", "30", "--max-time", "360",
             "--checks", "not_a_server_error,status_code_conformance,negative_data_rejection",
             "--request-timeout", "60", "--no-color", "--seed", "1", "--generation-database", "none"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        engine = app.state.r1.engine.engine
        leftover = dict(engine.requests)
    out = proc.stdout + proc.stderr
    (tmp_path / "schemathesis.txt").write_text(out)
    print(out[-3000:])
    assert proc.returncode == 0, out[:8000]
    assert "generated" in out and "Server error" not in out
    assert not leftover  # nothing left running after the last response
