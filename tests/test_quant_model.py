"""Whole-model quantization on tiny random models: which layers are quantized, logits within a stated
tolerance of float, MLA's absorbed decode still exact, and `r1 quantize` -> `load_quantized` round trips."""
import argparse
import copy
import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

import r1
from r1.commands import quantize_cmd
from r1.config import preset
from r1.engine.quant import DEFAULT_SKIP, QuantLinear, is_quantized, quantize_model
from r1.engine.quant_io import (DEEPSEEK_FP8_CONFIG, dequantize_embedding, load_quantized, quantize_embedding,
                                save_quantized)
from r1.formats.safetensors_io import FormatError
from r1.model import build_model
from r1.model.cache import KVCache

# Relative logit error ||q - f|| / ||f|| allowed per scheme, on N(0, 0.02) weights. Round-to-nearest leaves a
# per-weight RMS error of step/sqrt(12): int8 per row ~0.4% of sigma-scaled weights, FP8 e4m3 (3 mantissa
# bits) ~2-3%, int4 with 16 levels over a group's range ~8%; measured 0.5%, 2-3%, 5-10% on these models.
TOLERANCE = {"int8": 0.02, "fp8": 0.06, "int4": 0.15}
ARCHS = ("tiny-llama", "tiny-qwen2", "tiny-deepseek")


def tiny(name, **kw):
    torch.manual_seed(0)
    m = build_model(preset(name, **kw))
    m.init_weights(std=0.02)
    with torch.no_grad():  # non-trivial norms and biases, so a dropped one shows
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def ids(b=2, s=19, seed=3):
    return torch.randint(0, 512, (b, s), generator=torch.Generator().manual_seed(seed))


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def models():
    return {name: tiny(name) for name in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scheme,group", [("int8", 32), ("int4", 32), ("int4", 64), ("fp8", 32)])
def test_logits_within_stated_tolerance_of_float(models, arch, scheme, group):
    f = models[arch]
    q = copy.deepcopy(f)
    summary = quantize_model(q, scheme, group)
    assert summary.quantized and is_quantized(q)
    with torch.no_grad():
        want, got = f(ids()), q(ids())
    assert rel_err(got, want) < TOLERANCE[scheme]
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.8


def test_which_layers_are_quantized_deepseek(models):
    q = copy.deepcopy(models["tiny-deepseek"])
    summary = quantize_model(q, "int4", 32)
    # MLA's absorbed path reads kv_b_proj.weight; the router, embeddings and norms are not nn.Linear at all
    for i, layer in enumerate(q.model.layers):
        assert type(layer.self_attn.kv_b_proj) is nn.Linear
        assert summary.kept[f"model.layers.{i}.self_attn.kv_b_proj"] == "skipped by pattern"
        # kv_a_proj_with_mqa has 32 + 8 = 40 outputs: no int4 kernel takes N % 16 != 0, so it stays float
        assert "multiple of 16" in summary.kept[f"model.layers.{i}.self_attn.kv_a_proj_with_mqa"]
        assert isinstance(layer.self_attn.o_proj, QuantLinear)
    moe = q.model.layers[1].mlp
    assert isinstance(moe.gate.weight, nn.Parameter) and all(isinstance(e.down_proj, QuantLinear) for e in moe.experts)
    assert isinstance(q.mtp[0].eh_proj, QuantLinear)
    assert type(q.lm_head) is nn.Linear and type(q.model.embed_tokens) is nn.Embedding
    assert set(summary.quantized).isdisjoint(summary.kept)


def test_lm_head_flag_and_tied_embeddings(models):
    f = models["tiny-qwen2"]  # tied embeddings
    q = copy.deepcopy(f)
    assert "lm_head" in quantize_model(q, "int8").kept
    quantize_model(q, "int8", lm_head=True)  # a second pass quantizes what is left
    assert isinstance(q.lm_head, QuantLinear)
    assert torch.equal(q.model.embed_tokens.weight, f.model.embed_tokens.weight)  # the embedding stays float
    with torch.no_grad():
        assert rel_err(q(ids()), f(ids())) < TOLERANCE["int8"]


@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8"])
def test_quantized_deepseek_cached_absorbed_decode_equals_full_forward(models, scheme):
    q = copy.deepcopy(models["tiny-deepseek"])
    quantize_model(q, scheme, 32)
    x = ids(2, 12)
    cache = KVCache(2, 12)
    with torch.no_grad():
        steps = [q(x[:, :5], cache=cache)] + [q(x[:, t : t + 1], cache=cache) for t in range(5, 12)]
        full = q(x)
    assert (torch.cat(steps, 1) - full).abs().max() < 1e-4


def test_bad_scheme_and_group_size_are_named(models):
    with pytest.raises(ValueError, match="unknown quantization scheme 'int3'"):
        quantize_model(copy.deepcopy(models["tiny-llama"]), "int3")
    with pytest.raises(ValueError, match="group size 48"):
        quantize_model(copy.deepcopy(models["tiny-llama"]), "int4", 48)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("arch", ["tiny-qwen2", "tiny-deepseek"])
@pytest.mark.parametrize("scheme", ["int8", "int4", "fp8"])
def test_save_load_roundtrip_gives_identical_logits(models, arch, scheme, tmp_path):
    q = copy.deepcopy(models[arch])
    quantize_model(q, scheme, 32, lm_head=True)
    save_quantized(q, tmp_path / "out")
    back = load_quantized(tmp_path / "out")
    assert {n: type(m) for n, m in back.named_modules()} == {n: type(m) for n, m in q.named_modules()}
    with torch.no_grad():
        assert torch.equal(back(ids()), q(ids()))
    if arch == "tiny-deepseek":
        with torch.no_grad():
            h = q(ids(), return_hidden=True)[1]
            assert torch.equal(back.mtp_logits(h, ids())[0], q.mtp_logits(h, ids())[0])


def test_fp8_checkpoint_is_deepseeks_layout_and_r1_load_model_reads_it(models, tmp_path):
    q = copy.deepcopy(models["tiny-deepseek"])
    quantize_model(q, "fp8")
    save_quantized(q, tmp_path / "fp8")
    cfg = json.loads((tmp_path / "fp8" / "config.json").read_text())
    assert cfg["quantization_config"] == DEEPSEEK_FP8_CONFIG
    with safe_open(str(tmp_path / "fp8" / "model.safetensors"), "pt") as f:
        w = f.get_tensor("model.layers.0.self_attn.o_proj.weight")
        s = f.get_tensor("model.layers.0.self_attn.o_proj.weight_scale_inv")
        assert w.dtype == torch.float8_e4m3fn and s.dtype == torch.float32 and s.shape == (1, 1)
        assert f.get_tensor("model.layers.0.self_attn.kv_b_proj.weight").dtype == torch.float32  # kept float
        assert "model.layers.2.embed_tokens.weight" in f.keys()  # the MTP layer's copy, as DeepSeek ships it
    floated = r1.load_model(tmp_path / "fp8")  # the float loader dequantizes the same tiles
    for m in (floated, q):
        m.set_mla_impl("naive")
    with torch.no_grad():
        assert (floated(ids()) - q(ids())).abs().max() < 1e-5


def test_cli_requantizes_a_deepseek_fp8_release(models, tmp_path):
    q = copy.deepcopy(models["tiny-deepseek"])
    quantize_model(q, "fp8")
    save_quantized(q, tmp_path / "fp8")  # stands in for a DeepSeek-V3/R1 FP8 release: same layout
    assert run_cli(tmp_path / "fp8", tmp_path / "int4", "--scheme", "int4") == 0
    back = load_quantized(tmp_path / "int4")
    assert {m.scheme for m in back.modules() if isinstance(m, QuantLinear)} == {"int4"}
    with torch.no_grad():  # fp8 then int4: both errors, still within int4's tolerance of the float model
        assert rel_err(back(ids()), models["tiny-deepseek"](ids())) < TOLERANCE["int4"]


def test_int4_checkpoint_layout(models, tmp_path):
    q = copy.deepcopy(models["tiny-llama"])
    quantize_model(q, "int4", 64)
    save_quantized(q, tmp_path / "q")
    qc = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]
    assert qc == {"quant_method": "r1", "format_version": 2, "scheme": "int4", "group_size": 64,
                  "schemes": {"int4": 14}, "modules_not_converted": ["lm_head"]}
    with safe_open(str(tmp_path / "q" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.down_proj.qweight").shape == (64, 64)  # (N, K/2) uint8
        assert f.get_tensor("model.layers.0.mlp.down_proj.scales").shape == (64, 2)  # (N, K/64)
        assert f.get_tensor("model.layers.0.mlp.down_proj.zeros").shape == (64, 2)


def test_load_errors_name_the_problem(models, tmp_path):
    r1.save_model(models["tiny-llama"], tmp_path / "float")
    with pytest.raises(FormatError, match="no quantization_config"):
        load_quantized(tmp_path / "float")
    q = copy.deepcopy(models["tiny-llama"])
    quantize_model(q, "int8")
    save_quantized(q, tmp_path / "q")
    cfg_file = tmp_path / "q" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["quantization_config"]["quant_method"] = "gptq"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match="quant_method='gptq' is not supported"):
        load_quantized(tmp_path / "q")
    cfg["quantization_config"]["quant_method"] = "r1"
    cfg["intermediate_size"] = 96  # the stored layers no longer fit the config
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=r"layer model.layers.0.mlp.\w+_proj is stored as \(\d+, \d+\), but the config implies"):
        load_quantized(tmp_path / "q")


def test_save_is_atomic(models, tmp_path, monkeypatch):
    q = copy.deepcopy(models["tiny-llama"])
    quantize_model(q, "int8")
    out = save_quantized(q, tmp_path / "q")
    before = (out / "model.safetensors").read_bytes()
    import r1.formats.safetensors_io as sio  # the shared atomic writer

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sio, "save_file", boom)
    q2 = copy.deepcopy(models["tiny-llama"])
    quantize_model(q2, "int4")
    with pytest.raises(OSError, match="disk full"):
        save_quantized(q2, out)
    assert (out / "model.safetensors").read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # no temp dir left behind


# ---------------------------------------------------------------- CLI
def run_cli(*argv):
    p = argparse.ArgumentParser()
    quantize_cmd.add_parser(p.add_subparsers())
    args = p.parse_args(["quantize", *map(str, argv)])
    return args.func(args)


def test_cli_quantize_roundtrip_and_tokenizer_files(models, tmp_path, capsys):
    src = r1.save_model(models["tiny-deepseek"], tmp_path / "src")
    (src / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    (src / "chat_template.jinja").write_text("{{ messages }}")
    assert run_cli(src, tmp_path / "out", "--scheme", "int4", "--group-size", "32", "--skip", "*.down_proj") == 0
    assert "linear layers quantized" in capsys.readouterr().out
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == "{{ messages }}"
    assert (tmp_path / "out" / "tokenizer_config.json").read_text() == '{"eos_token": "</s>"}'
    back = load_quantized(tmp_path / "out")
    mem = copy.deepcopy(r1.load_model(src))
    quantize_model(mem, "int4", 32, skip=DEFAULT_SKIP + ("*.down_proj",))
    assert type(back.model.layers[0].mlp.down_proj) is nn.Linear
    with torch.no_grad():
        assert not torch.equal(back(ids()), mem(ids()))  # the CLI stores the embedding as int8 groups too
        table = mem.model.embed_tokens.weight
        table.copy_(dequantize_embedding(*quantize_embedding(table).values(), "mem"))
        assert torch.equal(back(ids()), mem(ids()))


def test_cli_refuses_to_overwrite_and_bad_input(models, tmp_path):
    src = r1.save_model(models["tiny-llama"], tmp_path / "src")
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit, match="already exists"):
        run_cli(src, tmp_path / "out", "--scheme", "int8")
    assert run_cli(src, tmp_path / "out", "--scheme", "int8", "--force") == 0
    with pytest.raises(SystemExit, match="group size 20"):
        run_cli(src, tmp_path / "out2", "--scheme", "int4", "--group-size", "20")
    with pytest.raises(SystemExit, match="not found"):
        run_cli(tmp_path / "nope", tmp_path / "out3", "--scheme", "int8")
    with pytest.raises(SystemExit, match="already quantized"):
        run_cli(tmp_path / "out", tmp_path / "out4", "--scheme", "int4")
    assert not any((tmp_path / n).exists() for n in ("out2", "out3", "out4"))


def test_r1_load_model_routes_quantized_folders_and_save_model_refuses_them(tmp_path):
    import pytest
    import torch

    import r1
    from r1.config import preset
    from r1.engine.quant import is_quantized, quantize_model
    from r1.engine.quant_io import save_quantized
    from r1.formats.safetensors_io import FormatError
    from r1.model import build_model

    torch.manual_seed(0)
    m = build_model(preset("tiny-llama")).eval()
    m.init_weights()
    quantize_model(m, "int8")
    with pytest.raises(FormatError, match="quantized layers"):
        r1.save_model(m, tmp_path / "nope")
    save_quantized(m, tmp_path / "q")
    back = r1.load_model(tmp_path / "q")
    assert is_quantized(back)
    ids = torch.randint(0, 512, (1, 6))
    with torch.no_grad():
        assert torch.equal(back(ids), m(ids))


def test_a_version_1_checkpoint_still_loads(models, tmp_path):
    q = copy.deepcopy(models["tiny-llama"])
    quantize_model(q, "int4", 32)
    out = save_quantized(q, tmp_path / "q")
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"]["format_version"] = 1
    (out / "config.json").write_text(json.dumps(cfg))
    ids = torch.randint(0, 256, (1, 7))
    with torch.no_grad():
        assert torch.equal(load_quantized(out)(ids), q(ids))


def test_quantized_embedding_is_q8_0_exact_and_close_for_floats():
    torch.manual_seed(0)
    d = (torch.rand(50, 4) * 0.05).half().float()  # a Q8_0 table: f16 scales times int8 codes, max code 127
    codes = torch.randint(-127, 128, (50, 4, 32))
    codes[..., 0] = 127
    table = (codes.float() * d[..., None]).reshape(50, 128)
    packed = quantize_embedding(table)
    assert packed["qweight"].dtype == torch.int8 and packed["scales"].dtype == torch.float16
    assert torch.equal(dequantize_embedding(packed["qweight"], packed["scales"], "t"), table)
    w = torch.randn(50, 128)
    back = dequantize_embedding(*quantize_embedding(w).values(), "t")
    assert (back - w).abs().max() <= w.abs().max() / 127  # half a step of the coarsest group, at most
    assert not torch.equal(back, w)
