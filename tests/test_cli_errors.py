"""Bad files and bad command lines through the real `r1` entry point: one line on stderr that
names the file and what is wrong with it, a non-zero exit, never a traceback (R1_DEBUG=1 aside).

Each mutant here failed differently before the one error path (r1/errors.py) and the config's
type and range checks: a ZeroDivisionError, a TypeError from torch, an allocation without bound,
all-NaN logits answered with exit 0, or one head tensor silently replacing the other."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest

from r1.cli import main
from r1.commands.common import EMBEDDED_DEFAULT

CONFIG_MUTANTS = {
    "n_group_zero": {"n_group": 0},
    "hidden_float": {"hidden_size": 1.5},
    "hidden_bool": {"hidden_size": True},
    "negative_ffn": {"intermediate_size": -1},
    "rope_theta_zero": {"rope_theta": 0},
    "rope_theta_nan": {"rope_theta": math.nan},
    "eps_negative": {"rms_norm_eps": -1},
    "eps_nan": {"rms_norm_eps": math.nan},
    "scaling_inf": {"routed_scaling_factor": math.inf},
    "a_billion_layers": {"num_hidden_layers": 10**9},
    "ten_million_experts": {"n_routed_experts": 10**7},
    "vocab_1e12": {"vocab_size": 10**12},
    "hidden_1e9": {"hidden_size": 10**9},
    "yarn_negative_factor": {"rope_scaling": {"type": "yarn", "factor": -4, "original_max_position_embeddings": 256}},
    "tied_yet_own_head": {"tie_word_embeddings": True},
}


def mutant(tmp_path: Path, name: str, edit: dict | str) -> Path:
    out = tmp_path / name
    shutil.copytree(EMBEDDED_DEFAULT, out)
    if isinstance(edit, str):
        (out / "config.json").write_text(edit)
    else:
        d = json.loads((out / "config.json").read_text())
        d.update(edit)
        (out / "config.json").write_text(json.dumps(d))
    return out


def one_line_error(capsys, rc: int, culprit: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("r1: ") and culprit in lines[0], err
    return lines[0]


@pytest.mark.parametrize("name", sorted(CONFIG_MUTANTS))
def test_info_on_a_bad_config_is_one_line(tmp_path, capsys, name):
    path = mutant(tmp_path, name, CONFIG_MUTANTS[name])
    if name == "tied_yet_own_head":  # the config alone is valid; only loading the tensors shows the clash
        assert main(["info", str(path)]) == 0
        return
    one_line_error(capsys, main(["info", str(path)]), str(path))


@pytest.mark.parametrize("name", ["n_group_zero", "hidden_float", "rope_theta_nan", "a_billion_layers",
                                  "hidden_1e9", "tied_yet_own_head"])
def test_run_on_a_bad_config_is_one_line(tmp_path, capsys, name):
    path = mutant(tmp_path, name, CONFIG_MUTANTS[name])
    msg = one_line_error(capsys, main(["run", str(path), "hi", "--max-tokens", "2"]), str(path))
    if name == "tied_yet_own_head":
        assert "tie_word_embeddings" in msg


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "[" * 100_000 + "]" * 100_000])
def test_a_config_that_is_not_an_object(tmp_path, capsys, text):
    path = mutant(tmp_path, "broken", text)
    one_line_error(capsys, main(["info", str(path)]), str(path))


def test_a_broken_tokenizer_is_one_line(tmp_path, capsys):
    path = mutant(tmp_path, "tok", {})
    tok = json.loads((path / "tokenizer.json").read_text())
    tok["model"]["vocab"] = {k: v for k, v in list(tok["model"]["vocab"].items())[:10]}  # merges name missing tokens
    (path / "tokenizer.json").write_text(json.dumps(tok))
    one_line_error(capsys, main(["run", str(path), "hi", "--max-tokens", "2"]), str(path))


def gguf_header(path: Path, **overrides) -> Path:
    """A llama GGUF header with one small tensor; overrides replace the metadata values."""
    meta = {"block_count": 2, "context_length": 64, "embedding_length": 16, "feed_forward_length": 32,
            "attention.head_count": 2, "attention.head_count_kv": 2, "rope.freq_base": 10000.0,
            "attention.layer_norm_rms_epsilon": 1e-5}
    meta.update(overrides)
    w = gguf.GGUFWriter(path, "llama")
    for key, v in meta.items():
        (w.add_float32 if isinstance(v, float) else w.add_uint32)(f"llama.{key}", v)
    w.add_token_list([f"t{i}" for i in range(32)])
    w.add_tensor("token_embd.weight", np.zeros((32, 16), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("key,value", [("attention.head_count_kv", 0), ("rope.freq_base", math.nan),
                                       ("rope.freq_base", -1.0), ("attention.layer_norm_rms_epsilon", math.inf),
                                       ("attention.layer_norm_rms_epsilon", 0.0), ("block_count", 10**9)])
def test_a_gguf_with_bad_metadata_is_one_line(tmp_path, capsys, key, value):
    path = gguf_header(tmp_path / "bad.gguf", **{key: value})
    one_line_error(capsys, main(["info", str(path)]), str(path))
    one_line_error(capsys, main(["run", str(path), "hi", "--max-tokens", "2"]), str(path))


def test_r1_debug_shows_the_traceback(tmp_path, monkeypatch):
    path = mutant(tmp_path, "ngroup", {"n_group": 0})
    monkeypatch.setenv("R1_DEBUG", "1")
    with pytest.raises(ValueError, match="n_group"):
        main(["info", str(path)])


# ------------------------------------------------------------------ command lines

def test_options_between_the_model_and_the_prompt(capsys):
    assert main(["run", str(EMBEDDED_DEFAULT), "--max-tokens", "2", "--temperature", "0", "--json", "hi"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["completion_tokens"] == 2


def test_a_mistyped_flag_gets_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--max-tokns", "2", "hi"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: r1 run") and "--max-tokns" in err


def test_nested_subcommands_parse_intermixed(capsys):
    assert main(["train", "grpo", "optim.lr=1e-5", "--print-config"]) == 0  # the flag after the override
    assert "  lr: 1.0e-05" in capsys.readouterr().out.splitlines()


def test_info_alone_describes_the_embedded_model(capsys):
    assert main(["info"]) == 0
    assert "the embedded model" in capsys.readouterr().out


def test_train_tokenizer_reads_any_existing_file(tmp_path, capsys):
    notes = tmp_path / "notes.md"  # neither .txt nor .jsonl: once taken for the corpus text itself
    notes.write_text(" ".join(f"word{i % 97} number {i * 37} and more text" for i in range(400)))
    out = tmp_path / "tok"
    assert main(["train", "tokenizer", str(notes), "--out", str(out), "--vocab-size", "400"]) == 0
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert any("word" in t for t in vocab) and any("more" in t for t in vocab)  # the file's words, not its name


def test_train_tokenizer_on_a_missing_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    one_line_error(capsys, main(["train", "tokenizer", str(missing), "--out", str(tmp_path / "t")]), str(missing))


def test_eval_defaults_fit_the_embedded_models_context(capsys):
    """`r1 eval` without --max-tokens on a 1024-token model: the default budget is capped to what
    the context leaves (it failed with "prompt + max_tokens exceeds the context"), and says so."""
    assert main(["eval", str(EMBEDDED_DEFAULT), "--task", "arithmetic", "--k", "1", "--limit", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "the default 1024 capped to the 1024-token context" in out
    # an explicit budget that does not fit stays an error that gives both numbers
    assert main(["eval", str(EMBEDDED_DEFAULT), "--task", "arithmetic", "--k", "1", "--limit", "2", "--quiet",
                 "--max-tokens", "1024"]) == 2
    assert "exceeds the context length of 1024" in capsys.readouterr().err


def test_overflowing_logits_are_one_line_not_an_empty_answer(tmp_path, capsys):
    """Finite weights whose logits overflow to Inf (the loader refuses NaN/Inf tensors; nothing in a
    config to validate here): `r1 run` says so and exits 1."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "overflowing-weights"
    shutil.copytree(EMBEDDED_DEFAULT, out)
    tensors = load_file(str(out / "model.safetensors"))
    name = next(n for n in tensors if n.endswith("norm.weight") and n.startswith("model.norm"))
    tensors[name][:] = 3e38  # finite, but the final norm's output times the head overflows
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    rc = main(["run", str(out), "What is 2 + 3?"])
    one_line_error(capsys, rc, "not finite")
