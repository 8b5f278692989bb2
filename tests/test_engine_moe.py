"""EngineMoE's stacked small-batch path against the routed reference (MoE.forward)."""
import pytest
import torch

from r1.config import preset
from r1.engine.moe import EngineMoE, bank_experts, use_engine_moe
from r1.model.deepseek import MoE


def moe(shared: int = 1, experts: int = 8, hidden: int = 64, inter: int = 32, seed: int = 0) -> MoE:
    torch.manual_seed(seed)
    m = MoE(preset("tiny-deepseek", hidden_size=hidden, moe_intermediate_size=inter, n_routed_experts=experts,
                   n_shared_experts=shared))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.1)
    m.gate.e_score_correction_bias.normal_(std=0.1)  # routing with a balancing bias, as trained
    return m.eval()


@pytest.mark.parametrize("shared", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 5, 32])
def test_stacked_path_equals_the_routed_loop(shared, n):
    ref = moe(shared)
    fast = moe(shared)
    assert use_engine_moe(fast) == 1 and type(fast) is EngineMoE
    x = torch.randn(2, n, 64)
    with torch.inference_mode():
        want, got = ref(x), fast(x)
    assert fast.__dict__["_stacked_weights"][1] is not None  # the stacked path ran
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(fast.last_expert_load, ref.last_expert_load)
    assert list(fast.state_dict()) == list(ref.state_dict())  # same names: checkpoints load either way


def test_follows_in_place_weight_updates_and_trains_on_the_reference():
    m = moe()
    use_engine_moe(m)
    x = torch.randn(4, 64)
    with torch.inference_mode():
        before = m(x)
    with torch.no_grad():
        m.experts[3].down_proj.weight.add_(1.0)
        m.shared_experts.up_proj.weight.mul_(2.0)
    with torch.inference_mode():
        after = m(x)
        want = MoE.forward(m, x)
    torch.testing.assert_close(after, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after, before)
    m.train()
    m(x).sum().backward()  # grad enabled: the routed loop, whose gradients reach the routed experts
    assert m.shared_experts.down_proj.weight.grad is not None


def test_large_batches_and_large_experts_take_the_routed_loop():
    m = moe()
    use_engine_moe(m)
    with torch.inference_mode():
        w1, w2, _ = m._stacked()
        x = torch.randn(EngineMoE.max_tokens_x_bytes // (w1.nbytes + w2.nbytes) + 1, 64)  # too many tokens
        torch.testing.assert_close(m(x), MoE.forward(m, x))
    big = moe(experts=16, hidden=256, inter=128)  # 6.7 MB of expert weights: stacking does not pay
    use_engine_moe(big)
    with torch.inference_mode():
        x = torch.randn(2, 256)
        torch.testing.assert_close(big(x), MoE.forward(big, x))
    assert big.__dict__["_stacked_weights"][1] is None and big.__dict__["_never_stacked"]


def _prepare(m, variant):
    from r1.engine.fuse import fuse_projections
    from r1.engine.quant import quantize_model

    if variant.startswith("int8"):
        quantize_model(m, "int8")
    if variant.endswith("fused"):
        fuse_projections(m)
    for mod in m.modules():  # fp32 products, so the two forms differ by summation order only
        if hasattr(mod, "compute_dtype"):
            mod.compute_dtype = None


@pytest.mark.parametrize("variant", ["float", "float-fused", "int8", "int8-fused"])
def test_banked_experts_gather_the_routed_function(variant):
    """The compiled step's MoE form (routed experts' rows gathered from the bank) equals the
    routed loop, and banking moves storage only: same state_dict, same Parameter objects, and
    the experts' tensors are views of the bank, so in-place updates reach it."""
    m = moe(shared=1, experts=8, hidden=64, inter=32)
    _prepare(m, variant)
    use_engine_moe(m)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    params = [id(p) for p in m.parameters()]
    x = torch.randn(5, 64)
    with torch.inference_mode():
        want = MoE.forward(m, x)
    assert bank_experts(m)
    w1, s1, w2, s2 = m.__dict__["_bank"]
    assert w1.shape == (8, 64, 64) and w2.shape == (8, 64, 32)
    assert (s1 is None) == variant.startswith("float")
    after = m.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert [id(p) for p in m.parameters()] == params
    down = m.experts[5].down_proj
    w = down.qweight if variant.startswith("int8") else down.weight
    assert w.untyped_storage().data_ptr() == w2.untyped_storage().data_ptr()
    with torch.inference_mode():
        got = m.forward_gathered(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(MoE.forward(m, x), want, rtol=0, atol=0)  # eager loop unchanged
    with torch.no_grad():
        w.add_(1)
    assert torch.equal(w2[5], w)


def test_experts_that_differ_are_not_banked():
    m = moe(experts=4)
    m.experts[2].down_proj = torch.nn.Linear(32, 64, bias=True)  # a bias the bank has no room for
    use_engine_moe(m)
    ptrs = [p.data_ptr() for p in m.parameters()]
    assert not bank_experts(m) and m.__dict__.get("_bank") is None
    assert [p.data_ptr() for p in m.parameters()] == ptrs


def test_a_cast_or_move_drops_the_bank():
    m = moe(experts=4)
    use_engine_moe(m)
    assert bank_experts(m)
    m.double()  # the experts' tensors are new ones now, not views of the bank
    assert m.__dict__.get("_bank") is None
    x = torch.randn(3, 64, dtype=torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), MoE.forward(m, x))
    assert bank_experts(m) and m.__dict__["_bank"][0].dtype == torch.float64  # banks again on request
