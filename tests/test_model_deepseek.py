"""DeepSeek-V3 specifics: MLA naive == absorbed, group-limited routing, MTP, FP8 checkpoints."""
import pytest
import torch

import r1
from r1.config import count_params, preset
from r1.formats.safetensors_io import FormatError, dequantize_fp8_block, quantize_fp8_block
from r1.model import build_model
from r1.model.cache import KVCache
from r1.model.deepseek import Gate


def tiny(std=0.1, **kw):
    torch.manual_seed(0)
    m = build_model(preset("tiny-deepseek", **kw))
    m.init_weights(std=std)
    with torch.no_grad():
        for n, b in m.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.05)
    return m.eval()


@pytest.mark.parametrize("q_lora_rank", [0, 16])
def test_mla_naive_equals_absorbed_with_cache(q_lora_rank):
    m = tiny(q_lora_rank=q_lora_rank)
    ids = torch.randint(0, 512, (2, 14), generator=torch.Generator().manual_seed(1))
    outs = {}
    for impl in ("naive", "absorb"):
        m.set_mla_impl(impl)
        cache = KVCache(2, 16)
        with torch.no_grad():
            steps = [m(ids[:, :6], cache=cache)] + [m(ids[:, t : t + 1], cache=cache) for t in range(6, 14)]
        outs[impl] = torch.cat(steps, 1)
        # the cache holds only the latent (c) and the roped key (r) per token and layer
        assert {k: v.shape[-1] for k, v in cache.layers[0].items()} == {"latent": 32, "k_pe": 8}
    m.set_mla_impl("auto")
    assert (outs["naive"] - outs["absorb"]).abs().max() < 1e-5
    with torch.no_grad():
        assert (outs["naive"] - m(ids)).abs().max() < 1e-5


def _gate(bias):
    cfg = preset("tiny-deepseek", n_routed_experts=8, n_group=4, topk_group=2, num_experts_per_tok=2)
    g = Gate(cfg)
    with torch.no_grad():
        g.weight.copy_(torch.randn_like(g.weight))
        g.e_score_correction_bias.fill_(bias)
    return g


def test_gate_group_limited_routing_picks_only_selected_groups():
    g = _gate(0.0)
    x = torch.randn(64, 64)
    _, idx, scores = g(x)
    # recompute the selected groups by hand: top-2 sum per group of 2 experts = the group's sum
    group_scores = scores.view(64, 4, 2).sum(-1)
    chosen = group_scores.topk(2, -1)[1]
    assert all(set((idx[i] // 2).tolist()) <= set(chosen[i].tolist()) for i in range(64))


def test_gate_mask_value_matters_only_for_negative_biased_scores():
    """-inf masking (DeepSeek's reference, transformers >= 5) vs 0 masking (older transformers):
    identical while biased scores are >= 0; with a strongly negative bias, 0-masking picks experts
    from groups that lost the group vote, which -inf never does."""
    x = torch.randn(64, 64)
    g = _gate(0.0)
    assert torch.equal(g(x)[1].sort(-1)[0], g(x, mask_value=0.0)[1].sort(-1)[0])
    g = _gate(-5.0)  # sigmoid in (0, 1) + bias -5 < 0 everywhere
    _, idx_inf, scores = g(x)
    _, idx_zero, _ = g(x, mask_value=0.0)
    chosen = (scores - 5.0).view(64, 4, 2).topk(2, -1)[0].sum(-1).topk(2, -1)[1]
    inside = lambda idx: all(set((idx[i] // 2).tolist()) <= set(chosen[i].tolist()) for i in range(64))
    assert inside(idx_inf)
    assert not inside(idx_zero)


def test_mtp_logits_shapes_and_save_load_roundtrip(tmp_path):
    m = tiny()
    ids = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        logits, h = m(ids, return_hidden=True)
        mtp = m.mtp_logits(h, ids)
    assert logits.shape == (2, 10, 512) and [t.shape for t in mtp] == [(2, 9, 512)]
    r1.save_model(m, tmp_path / "ck")
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    # DeepSeek's layout: the MTP module is decoder layer L (=2) with its own embed/head copies
    assert {"model.layers.2.eh_proj.weight", "model.layers.2.embed_tokens.weight",
            "model.layers.2.shared_head.head.weight", "model.layers.2.mlp.experts.7.up_proj.weight"} <= names
    m2 = r1.load_model(tmp_path / "ck")
    with torch.no_grad():
        l2, h2 = m2(ids, return_hidden=True)
        assert torch.equal(l2, logits) and torch.equal(m2.mtp_logits(h2, ids)[0], mtp[0])


def test_fp8_block_checkpoint_matches_original_within_fp8_tolerance(tmp_path):
    from safetensors.torch import save_file
    # dims not multiples of 128 (partial tiles); std 0.02 as at init -- with larger weights, FP8 noise
    # flips many top-k routing decisions of a random MoE and the comparison measures chaos, not FP8
    m = tiny(std=0.02, hidden_size=160, moe_intermediate_size=136)
    r1.save_model(m, tmp_path / "bf16", dtype=torch.bfloat16)
    ref = r1.load_model(tmp_path / "bf16")
    fp8 = {}
    for name, t in ref.state_dict().items():
        hub = name if not name.startswith("mtp.") else "model.layers.2." + name.split(".", 2)[2]
        if name == "rotary.inv_freq":
            continue
        if t.dim() == 2 and "embed" not in name and "lm_head" not in name and not name.endswith("gate.weight"):
            q, s = quantize_fp8_block(t)
            fp8[hub], fp8[hub + "_scale_inv"] = q, s
        else:
            fp8[hub] = t.to(torch.bfloat16) if "correction_bias" not in name else t
    fp8["model.layers.2.embed_tokens.weight"] = fp8["model.embed_tokens.weight"].clone()
    fp8["model.layers.2.shared_head.head.weight"] = fp8["lm_head.weight"].clone()
    (tmp_path / "fp8").mkdir()
    save_file({k: v.contiguous() for k, v in fp8.items()}, str(tmp_path / "fp8" / "model.safetensors"))
    (tmp_path / "fp8" / "config.json").write_text((tmp_path / "bf16" / "config.json").read_text())
    m8 = r1.load_model(tmp_path / "fp8")
    sd8 = m8.state_dict()
    # every FP8 weight was dequantized tile by tile with its own scale (exactly)
    assert torch.equal(sd8["model.layers.1.mlp.experts[0].up_proj.weight".replace("[0]", ".0")],
                       dequantize_fp8_block(fp8["model.layers.1.mlp.experts.0.up_proj.weight"],
                                            fp8["model.layers.1.mlp.experts.0.up_proj.weight_scale_inv"]))
    w, w8 = ref.model.layers[1].mlp.experts[0].up_proj.weight, m8.model.layers[1].mlp.experts[0].up_proj.weight
    assert (w - w8).abs().max() <= w.abs().max() / 8  # e4m3: 3 mantissa bits, relative step 1/8
    ids = torch.randint(0, 512, (2, 12))
    with torch.no_grad():
        a, b = ref(ids), m8(ids)
    rel = ((a - b).norm() / a.norm()).item()
    assert rel < 0.05, rel


def test_fp8_dequant_roundtrip_exact_on_representable_values():
    w = torch.randn(300, 200)
    q, s = quantize_fp8_block(w)
    assert s.shape == (3, 2) and q.dtype == torch.float8_e4m3fn
    d = dequantize_fp8_block(q, s)
    q2, s2 = quantize_fp8_block(d)
    assert torch.equal(dequantize_fp8_block(q2, s2), d)


def test_deepseek_v3_preset_figures():
    r = count_params(preset("deepseek-v3"))
    assert abs(r.total / 1e9 - 671.0) < 0.1
    assert abs(r.activated / 1e9 - 37.5) < 0.1
    assert abs(r.mtp_unique / 1e9 - 11.6) < 0.1
    assert (r.kv_elems_per_token_layer, r.kv_elems_naive_per_token_layer) == (576, 40960)


def test_info_cli_prints_figures(capsys):
    from r1.cli import main
    assert main(["info", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    assert "671.03B" in out and "37.55B" in out and "11.61B" in out and "71.1x" in out


def test_shape_mismatch_and_missing_tensor_are_named(tmp_path):
    m = tiny()
    r1.save_model(m, tmp_path / "a")
    cfg = (tmp_path / "a" / "config.json").read_text().replace('"kv_lora_rank": 32', '"kv_lora_rank": 24')
    (tmp_path / "a" / "config.json").write_text(cfg)
    with pytest.raises(FormatError, match=r"self_attn\.kv_a.*has shape .* config implies"):
        r1.load_model(tmp_path / "a")


def test_sharded_checkpoint_loads_shard_by_shard(tmp_path):
    import json
    m = tiny()
    r1.save_model(m, tmp_path / "sh", max_shard_bytes=40_000)
    index = json.loads((tmp_path / "sh" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    m2 = r1.load_model(tmp_path / "sh")
    ids = torch.randint(0, 512, (1, 9))
    with torch.no_grad():
        assert torch.equal(m(ids), m2(ids))


def test_a_meta_build_skips_initialization_and_imports_no_dynamo():
    """Every load builds the model on the meta device first. nn.Module's random initializations and the
    RoPE table, run on meta, go through torch's Python references, whose first use imports torch._dynamo
    (~1 s). build_model skips the fills there and computes the table on the CPU."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom r1.config import preset\nfrom r1.model import build_model\n"
            "m = build_model(preset('tiny-deepseek'), device='meta')\n"
            "assert {t.device.type for t in [*m.parameters(), *m.buffers()]} == {'meta'}\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
