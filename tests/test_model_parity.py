"""Logit parity with transformers (the peer implementation) on tiny random models it saves."""
import pytest
import torch

import r1
from r1.model.cache import KVCache

transformers = pytest.importorskip("transformers")

V = 211
DS_BASE = dict(vocab_size=V, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
               num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=32,
               qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=8, n_shared_experts=1,
               num_experts_per_tok=3, n_group=4, topk_group=2, first_k_dense_replace=1, routed_scaling_factor=2.5,
               norm_topk_prob=True, max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=False)
CASES = {
    "deepseek_v3_qlora": ("DeepseekV3Config", dict(DS_BASE, q_lora_rank=24)),
    "deepseek_v3_no_qlora_yarn": ("DeepseekV3Config", dict(
        DS_BASE, q_lora_rank=None, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                                                  "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})),
    "qwen2": ("Qwen2Config", dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                  tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=512,
                                  tie_word_embeddings=False)),
    "llama3_rope": ("LlamaConfig", dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
                                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
}


def make_hf(kind, tmp_path_factory):
    cls_name, kw = CASES[kind]
    cfg = getattr(transformers, cls_name)(**kw)
    torch.manual_seed(1)
    hf = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # random, non-trivial weights everywhere (norm gains and biases too)
        for n, p in hf.named_parameters():
            p.copy_(torch.randn_like(p) * (0.05 if p.dim() > 1 else 0.1) + (1.0 if "norm" in n else 0.0))
        for n, b in hf.named_buffers():
            if n.endswith("e_score_correction_bias"):  # non-negative: see test_gate_group_masking
                b.copy_(torch.rand_like(b) * 0.1)
    out = tmp_path_factory.mktemp(kind)
    hf.save_pretrained(out)
    return hf, out


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    hf, path = make_hf(request.param, tmp_path_factory)
    return request.param, hf, r1.load_model(path), path


def test_logits_match_transformers(pair):
    kind, hf, ours, _ = pair
    ids = torch.randint(0, V, (2, 37), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = hf(ids).logits
        got = ours(ids)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-4, kind


def test_cached_decode_equals_uncached_forward(pair):
    kind, _, model, _ = pair
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(2, 32)
        steps = [model(ids[:, :12], cache=cache)]
        for t in range(12, 20):
            steps.append(model(ids[:, t : t + 1], cache=cache))
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-4, kind


def test_left_padded_batch_equals_single(pair):
    kind, _, model, _ = pair
    a = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(5))
    b = torch.randint(0, V, (1, 5), generator=torch.Generator().manual_seed(6))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    mask = torch.ones_like(batch)
    mask[1, :4] = 0
    with torch.no_grad():
        for ffn_real_only in (False, True):  # True: the feed-forward skips the padding positions
            got = model(batch, attention_mask=mask, ffn_real_only=ffn_real_only)
            assert (got[0] - model(a)[0]).abs().max() < 1e-4
            assert (got[1, 4:] - model(b)[0]).abs().max() < 1e-4, kind


def test_roundtrip_r1_saves_transformers_loads(pair, tmp_path):
    kind, _, model, _ = pair
    r1.save_model(model, tmp_path / "out")
    hf2 = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    ids = torch.randint(0, V, (1, 16), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert (hf2(ids).logits - model(ids)).abs().max().item() < 1e-4, kind


@pytest.mark.parametrize("q_lora_rank", [20, None])
def test_mla_latent_norms_in_float64_with_eps_1e5(tmp_path_factory, q_lora_rank):
    """transformers and DeepSeek's reference build q_a_layernorm and kv_a_layernorm with RMSNorm's
    own 1e-6, whatever rms_norm_eps says; only the decoder and final norms take the config's value.
    With rms_norm_eps=1e-5 the wrong epsilon moved the logits by ~1e-4: compared in float64 (so no
    float32 tolerance can hide it), with and without q-LoRA, several expert groups and odd head sizes."""
    CASES["_eps"] = ("DeepseekV3Config", dict(DS_BASE, rms_norm_eps=1e-5, q_lora_rank=q_lora_rank, qk_nope_head_dim=11,
                                              qk_rope_head_dim=6, v_head_dim=9, kv_lora_rank=28))
    try:
        hf, path = make_hf("_eps", tmp_path_factory)
    finally:
        del CASES["_eps"]
    hf = hf.double()
    hf.config._experts_implementation = "eager"  # the grouped-GEMM path takes no float64
    ours = r1.load_model(path, dtype=torch.float64)
    ids = torch.randint(0, V, (2, 29), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        gap = (ours(ids) - hf(ids).logits).abs().max().item()
    assert gap < 1e-6, gap
