"""Malformed safetensors checkpoints: a clear error naming the file and the field, fast."""
import json
import time

import pytest
import torch
from safetensors.torch import save_file

import r1
from r1.config import ConfigError, preset
from r1.formats.safetensors_io import FormatError
from r1.model import build_model


@pytest.fixture()
def ckpt(tmp_path):
    torch.manual_seed(0)
    m = build_model(preset("tiny-qwen2"))
    m.init_weights()
    return r1.save_model(m, tmp_path / "ok")


def fails_fast(path, exc, pattern):
    t = time.perf_counter()
    with pytest.raises(exc, match=pattern):
        r1.load_model(path)
    assert time.perf_counter() - t < 5  # generous: the point is "no hang", not a timing


def test_truncated_data(ckpt):
    f = ckpt / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    fails_fast(ckpt, FormatError, r"model\.safetensors: tensor data ends at byte \d+ but the file has \d+ \(truncated\)")


def test_header_length_beyond_file(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[:8] = (2**40).to_bytes(8, "little")
    f.write_bytes(bytes(data))
    fails_fast(ckpt, FormatError, r"model\.safetensors: header length 1099511627776 does not fit")


def test_header_not_json(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:12] = b"\xff\xfe{{"
    f.write_bytes(bytes(data))
    fails_fast(ckpt, FormatError, r"model\.safetensors: header is not valid JSON")


def test_file_shorter_than_header_length_field(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x01\x02")
    fails_fast(ckpt, FormatError, r"truncated safetensors file \(2 bytes")


def test_index_names_missing_shard(ckpt):
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00002-of-00002.safetensors"}}))
    fails_fast(ckpt, FormatError, r"index\.json: lists shards that are not in")


def test_unknown_architecture(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "mamba"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    fails_fast(ckpt, ConfigError, r"config\.json: model_type='mamba' is not supported")


def test_wrong_tensor_shape_and_missing_tensor(ckpt, tmp_path):
    from safetensors.torch import load_file
    sd = load_file(str(ckpt / "model.safetensors"))
    sd["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(sd, str(ckpt / "model.safetensors"))
    fails_fast(ckpt, FormatError, r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape \(3, 3\), but the config implies \(128, 64\)")
    del sd["model.layers.0.mlp.up_proj.weight"]
    save_file(sd, str(ckpt / "model.safetensors"))
    fails_fast(ckpt, FormatError, r"1 tensors missing, e\.g\. \['model\.layers\.0\.mlp\.up_proj\.weight'\]")


def test_fp8_weight_without_scale(ckpt):
    from safetensors.torch import load_file
    sd = load_file(str(ckpt / "model.safetensors"))
    sd["model.layers.0.mlp.up_proj.weight"] = sd["model.layers.0.mlp.up_proj.weight"].to(torch.float8_e4m3fn)
    save_file(sd, str(ckpt / "model.safetensors"))
    fails_fast(ckpt, FormatError, r"FP8 tensor model\.layers\.0\.mlp\.up_proj\.weight has no .*weight_scale_inv")


def test_nan_weights_are_refused(ckpt):
    from safetensors.torch import load_file
    sd = load_file(str(ckpt / "model.safetensors"))
    sd["model.norm.weight"][0] = float("nan")
    save_file(sd, str(ckpt / "model.safetensors"))
    fails_fast(ckpt, FormatError, r"'model\.norm\.weight' contains NaN or Inf")
