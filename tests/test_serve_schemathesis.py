"""Schemathesis against the app's own OpenAPI schema, positive and negative data: no 500s, every
status documented, invalid data rejected, and no request hangs (each has a timeout)."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, tiny_engine

pytestmark = pytest.mark.slow
MODEL = "m"

# Most generated bodies name a random model and would stop at the 404; pointing string `model`
# fields at the served model lets the rest of each body reach the engine. Wrong types stay wrong.
HOOKS = textwrap.dedent(f'''
    import schemathesis

    @schemathesis.hook
    def map_body(ctx, body):
        if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
            body["model"] = {MODEL!r}
        return body
''')


def test_schemathesis_finds_no_server_errors(tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is not installed")
    (tmp_path / "serve_st_hooks.py").write_text(HOOKS)
    # short context: positive cases generate at most ~100 tokens, so the run is bounded by checks
    app = create_app(tiny_engine(max_model_len=128, max_waiting=256), model_name=MODEL)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "serve_st_hooks", "PYTHONPATH": str(tmp_path)}
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
