"""FP8 mixed precision (DeepSeek-V3 §3.3): fine-grained E4M3 quantization (1x128 activation tiles, 128x128
weight blocks), all three GEMMs of a linear layer on FP8 inputs, fp32 master weights, and a tiny
pretraining run whose loss stays within 0.25% of the fp32 run."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from r1.config import preset
from r1.model import build_model
from r1.train.config import OptimConfig
from r1.train.fp8 import FP8_MAX, Fp8Config, Fp8Linear, dequantize_tiles, enable_fp8, hopper_available, qdq, \
    quantize_tiles
from r1.train.optim import build_optimizer
from r1.train.pretrain import train
from train_common import tiny_config, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)


def test_tile_quantization():
    torch.manual_seed(0)
    x = torch.randn(5, 300)
    x[2, 10] = 1e5  # an outlier: it may only cost precision inside its own 1x128 tile
    q, s = quantize_tiles(x, 1, 128)
    assert q.dtype == torch.float8_e4m3fn and q.shape == x.shape and s.shape == (5, 3)
    # each tile's largest entry lands on the top of the E4M3 range
    assert torch.allclose(q.float().abs().view(5, -1)[:, :128].amax(1), torch.full((5,), FP8_MAX))
    d = dequantize_tiles(q, s, 1, 128)
    assert torch.equal(d, qdq(x, 1, 128))
    rel = ((d - x).abs() / x.abs().clamp(min=1e-3))
    others = torch.ones_like(x, dtype=torch.bool)
    others[2, :128] = False
    assert rel[others].median() < 2 ** -4 and rel[others].max() < 0.25  # 3 mantissa bits
    per_tensor = x.abs().max() / FP8_MAX
    coarse = (x / per_tensor).to(torch.float8_e4m3fn).float() * per_tensor
    assert (coarse - x)[others].abs().mean() > 5 * (d - x)[others].abs().mean()  # why tiles: outliers stay local

    w = torch.randn(200, 300)
    qw, sw = quantize_tiles(w, 128, 128)
    assert sw.shape == (2, 3)
    assert torch.allclose(sw[1, 2], w[128:, 256:].abs().max() / FP8_MAX)


def test_fp8_linear_gemms_match_their_definition():
    torch.manual_seed(0)
    lin = nn.Linear(96, 160, bias=True)
    f8 = Fp8Linear.from_linear(lin)
    assert f8.weight is lin.weight and f8.bias is lin.bias  # the fp32 master weight itself
    x = torch.randn(3, 7, 96, requires_grad=True)
    y = f8(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    x2, gy2 = x.detach().reshape(-1, 96), gy.reshape(-1, 160)
    xq, wq = qdq(x2, 1, 128), qdq(lin.weight.detach(), 128, 128)
    assert torch.allclose(y.detach().reshape(-1, 160), xq @ wq.t() + lin.bias.detach(), atol=1e-5)
    # dgrad: gy in 1x128 tiles along the output dim; wgrad: both operands re-tiled 128x1 over tokens
    assert torch.allclose(x.grad.reshape(-1, 96), qdq(gy2, 1, 128) @ wq, atol=1e-5)
    assert torch.allclose(lin.weight.grad, qdq(gy2, 128, 1).t() @ qdq(xq, 128, 1), atol=1e-4)
    assert lin.weight.grad.dtype == torch.float32
    ref = x2 @ lin.weight.detach().t() + lin.bias.detach()
    assert (y.detach().reshape(-1, 160) - ref).norm() / ref.norm() < 0.05


def test_enable_fp8_keeps_names_head_router_and_fp32_state():
    model = build_model(preset("tiny-deepseek", hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                               kv_lora_rank=16, vocab_size=64))
    model.init_weights()
    names = list(model.state_dict())
    swapped = enable_fp8(model, Fp8Config(enabled=True))
    assert list(model.state_dict()) == names  # checkpoints are unchanged
    assert "lm_head" not in swapped and "model.layers.1.mlp.experts.0.up_proj" in swapped
    assert type(model.lm_head) is nn.Linear and all(isinstance(m, Fp8Linear) for n, m in model.named_modules()
                                                    if n in swapped)
    opt, _ = build_optimizer(model, OptimConfig(), total_steps=1)
    ids = torch.randint(0, 64, (2, 9))
    logits, h = model(ids, return_hidden=True)
    (logits.logsumexp(-1).mean() + model.mtp_logits(h, ids)[0].logsumexp(-1).mean()).backward()
    opt.step()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items() if k != "step")


def test_fp8_pretraining_within_quarter_percent_of_fp32(tmp_path, tokenizer_dir):
    def run(name, **kw):
        h = train(tiny_config(tmp_path / name, tokenizer_dir, steps=30, **{"optim.lr": 1e-3, **kw}))
        return sum(r["lm_loss"] for r in h[-10:]) / 10, h

    fp32, h32 = run("fp32")
    fp8, h8 = run("fp8", **{"fp8.enabled": True})
    assert h32[0]["lm_loss"] - fp32 > 0.3  # it trained
    gap = (fp8 - fp32) / fp32
    print(f"loss over the last 10 of 30 steps: fp32 {fp32:.5f}  fp8 {fp8:.5f}  relative gap {gap:+.4%}")
    assert h8[0]["lm_loss"] != h32[0]["lm_loss"]  # the FP8 run really quantized its GEMMs
    assert abs(gap) < 0.0025


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or not hopper_available(torch.device("cuda")),
                    reason="needs an SM90 (Hopper) GPU for blockwise FP8 scaled_mm")
def test_hopper_scaled_mm_matches_qdq():
    torch.manual_seed(0)
    lin = nn.Linear(256, 384, bias=False).cuda()
    x = torch.randn(64, 256, device="cuda", dtype=torch.bfloat16)
    fast = Fp8Linear.from_linear(lin, use_hopper=True)
    ref = Fp8Linear.from_linear(lin, use_hopper=False)
    assert fast.use_hopper
    assert torch.allclose(fast(x).float(), ref(x).float(), rtol=2e-2, atol=2e-2)
