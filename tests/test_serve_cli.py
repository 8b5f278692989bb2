"""`r1 serve` argument handling (the server itself runs from the CLI in bench/serve_load.py)."""
import argparse

import pytest

from r1.commands import serve_cmd


def parse(*argv):
    p = argparse.ArgumentParser()
    serve_cmd.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["serve", *argv])


def test_defaults_listen_on_loopback():
    a = parse()
    assert (a.host, a.port, a.profile, a.model, a.api_key, a.guard) == ("127.0.0.1", 8000, "base", None, None, None)
    assert a.func is serve_cmd.serve_cmd and a.max_waiting > 0  # the queue is bounded by default


def test_options():
    a = parse("m.gguf", "--port", "9", "--api-key", "a", "--api-key", "b", "--profile", "turbo", "--guard", "rules",
              "--guard-output", "--thinking-budget", "64", "--served-model-name", "x")
    assert (a.model, a.port, a.api_key, a.profile, a.guard, a.guard_output, a.thinking_budget, a.served_model_name) == \
        ("m.gguf", 9, ["a", "b"], "turbo", ["rules"], True, 64, "x")
    with pytest.raises(SystemExit):
        parse("--profile", "fast")


def test_bad_inputs_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit, match="not found"):
        serve_cmd.serve_cmd(parse(str(tmp_path / "missing.gguf")))
    with pytest.raises(SystemExit, match="unknown dtype"):
        serve_cmd.serve_cmd(parse(str(tmp_path), "--dtype", "fp64"))
    with pytest.raises(SystemExit, match="--guard-output needs"):
        serve_cmd.serve_cmd(parse(str(tmp_path), "--guard-output"))
    with pytest.raises(SystemExit, match="not 'rules'"):
        serve_cmd.serve_cmd(parse(str(tmp_path), "--guard", "nonsense"))
