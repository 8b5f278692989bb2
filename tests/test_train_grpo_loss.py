"""GRPO math against hand-computed values (r1/train/grpo_loss.py).

The fixed batch: 2 completions, 3 positions, the second one has 2 real tokens.
    log-ratio row 0: [0, ln 1.5, ln 0.5]  -> rho [1, 1.5, 0.5],  A = +1
    log-ratio row 1: [ln 0.5, ln 1.1, ln 2 (padding)] -> rho [0.5, 1.1, -],  A = -0.5
Per-token loss -min(rho*A, clip(rho, 0.8, 1.2)*A) with epsilon = 0.2:
    row 0: -min(1, 1) = -1;  -min(1.5, 1.2) = -1.2 (clipped high);  -min(0.5, 0.8) = -0.5
    row 1: -min(-0.25, -0.4) = 0.4 (clipped low);  -min(-0.55, -0.55) = 0.55
Sums: row 0 = -2.7 over 3 tokens, row 1 = 0.95 over 2 tokens, all = -1.75 over 5 tokens.
"""
import math

import pytest
import torch

from r1.config import preset
from r1.model import build_model
from r1.train.grpo_loss import (dynamic_sampling_keep, group_advantages, grpo_loss, k3_kl, nanstd, token_entropy,
                                token_logps)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine the
    # thread pool's barrier waits make every small op many times slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
ADV = torch.tensor([1.0, -0.5])
LOG_RATIO = torch.tensor([[0.0, math.log(1.5), math.log(0.5)], [math.log(0.5), math.log(1.1), math.log(2.0)]])
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]])


def logps_(requires_grad=False):
    return (OLD + LOG_RATIO).clone().requires_grad_(requires_grad)


@pytest.mark.parametrize("loss_type,kwargs,want", [
    ("grpo", {}, ((-2.7 / 3) + (0.95 / 2)) / 2),  # -0.2125: per-sequence mean, then batch mean
    ("bnpo", {}, -1.75 / 5),  # -0.35: token sum / tokens in the local batch
    ("dr_grpo", {"max_completion_length": 4}, -1.75 / (2 * 4)),  # -0.21875: / (rows * max length)
    ("dapo", {"num_items_in_batch": 5}, -1.75 / 5),  # token-level over the global batch ...
    ("dapo", {"num_items_in_batch": 10}, -1.75 / 10),  # ... whose count is given, not this batch's
])
def test_loss_types_match_hand_computed_values(loss_type, kwargs, want):
    out = grpo_loss(logps_(), ADV, MASK, loss_type=loss_type, old_logps=OLD, epsilon=0.2, **kwargs)
    assert out.loss.item() == pytest.approx(want, abs=1e-6)
    assert out.tokens == 5 and out.clip_low == 1 and out.clip_high == 1 and out.kl == 0


def test_clip_higher_raises_only_the_upper_bound():
    # epsilon_high 0.28: row 0 token 1 is now clipped at 1.28 instead of 1.2; the low side is unchanged
    out = grpo_loss(logps_(), ADV, MASK, loss_type="bnpo", old_logps=OLD, epsilon=0.2, epsilon_high=0.28)
    assert out.loss.item() == pytest.approx((-1 - 1.28 - 0.5 + 0.4 + 0.55) / 5, abs=1e-6)
    # with epsilon_high 0.6 nothing is clipped high any more
    out = grpo_loss(logps_(), ADV, MASK, loss_type="bnpo", old_logps=OLD, epsilon=0.2, epsilon_high=0.6)
    assert out.clip_high == 0 and out.clip_low == 1
    assert out.loss.item() == pytest.approx((-1 - 1.5 - 0.5 + 0.4 + 0.55) / 5, abs=1e-6)


def test_clipped_tokens_get_no_gradient():
    lp = logps_(True)
    grpo_loss(lp, ADV, MASK, loss_type="bnpo", old_logps=OLD, epsilon=0.2).loss.backward()
    g = lp.grad
    # d/dlogp of -rho*A = -rho*A/5 where unclipped; 0 where the clip is active or padding
    want = torch.tensor([[-1.0, 0.0, -0.5], [0.0, 0.55, 0.0]]) / 5
    assert torch.allclose(g, want, atol=1e-6)


def test_grad_accumulation_scaling():
    # grpo/bnpo/dr_grpo are per-micro-batch averages: divided by the accumulation steps
    for lt, kw in [("grpo", {}), ("bnpo", {}), ("dr_grpo", {"max_completion_length": 4})]:
        one = grpo_loss(logps_(), ADV, MASK, loss_type=lt, old_logps=OLD, **kw).loss
        four = grpo_loss(logps_(), ADV, MASK, loss_type=lt, old_logps=OLD, grad_accum_steps=4, **kw).loss
        assert four.item() == pytest.approx(one.item() / 4)
    # dapo's normalizer already spans the generation batch: micro-batch losses just add up
    whole = grpo_loss(logps_(), ADV, MASK, loss_type="dapo", old_logps=OLD, num_items_in_batch=5).loss
    parts = sum(grpo_loss(logps_()[i:i + 1], ADV[i:i + 1], MASK[i:i + 1], loss_type="dapo", old_logps=OLD[i:i + 1],
                          num_items_in_batch=5, grad_accum_steps=2).loss for i in range(2))
    assert parts.item() == pytest.approx(whole.item())


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_first_update_ratio_is_one_and_gradient_is_the_policy_gradient(loss_type):
    lp = logps_(True)
    out = grpo_loss(lp, ADV, MASK, loss_type=loss_type, old_logps=None, max_completion_length=4, num_items_in_batch=5)
    out.loss.backward()
    assert out.clip_low == 0 and out.clip_high == 0  # ratio exactly 1 everywhere
    # the policy-gradient surrogate -sum_i w_i A_i sum_t log pi(o_it), with loss_type's weights w
    weight = {"grpo": MASK / MASK.sum(-1, keepdim=True) / 2, "bnpo": MASK / 5, "dr_grpo": MASK / 8,
              "dapo": MASK / 5}[loss_type]
    lp2 = logps_(True)
    (-(weight * ADV[:, None] * lp2).sum()).backward()
    assert torch.allclose(lp.grad, lp2.grad, atol=1e-7)
    # and the loss value is -sum(w * A) since rho = 1
    assert out.loss.item() == pytest.approx(-(weight * ADV[:, None]).sum().item(), abs=1e-6)


def test_beta_adds_the_k3_term():
    # ref - logp = ln 2 on every token: k3 = 2 - ln 2 - 1 = 1 - ln 2
    ref = logps_() + math.log(2.0)
    assert torch.allclose(k3_kl(logps_(), ref), torch.full((2, 3), 1 - math.log(2)), atol=1e-6)
    beta = 0.04
    base = grpo_loss(logps_(), ADV, MASK, loss_type="bnpo", old_logps=OLD)
    lp = logps_(True)
    out = grpo_loss(lp, ADV, MASK, loss_type="bnpo", old_logps=OLD, beta=beta, ref_logps=ref)
    assert out.loss.item() - base.loss.item() == pytest.approx(beta * (1 - math.log(2)), abs=1e-6)
    assert out.kl == pytest.approx(5 * (1 - math.log(2)), abs=1e-5)
    out.loss.backward()
    # d/dlogp beta*(e^(ref-logp) - (ref-logp) - 1) = beta*(1 - e^(ref-logp)) = beta*(1 - 2) = -beta, per token / 5
    lp0 = logps_(True)
    grpo_loss(lp0, ADV, MASK, loss_type="bnpo", old_logps=OLD).loss.backward()
    assert torch.allclose(lp.grad - lp0.grad, -beta * MASK / 5, atol=1e-6)
    # k3 is zero (value and gradient) when the policy equals the reference
    lp3 = logps_(True)
    z = grpo_loss(lp3, ADV, MASK, loss_type="bnpo", old_logps=OLD, beta=beta, ref_logps=logps_())
    assert z.kl == pytest.approx(0.0, abs=1e-6) and z.loss.item() == pytest.approx(base.loss.item(), abs=1e-6)


def test_group_advantages_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0, 1.0, 1.0])
    # group 0: mean .25, sample std sqrt((.75^2 + 3 * .25^2) / 3) = .5 ; group 1: all equal
    # group 2: mean 1, sample std sqrt((1 + 1) / 3)
    a = group_advantages(r, 4, "group")
    s2 = math.sqrt(2 / 3)
    want = [.75 / .5001, -.25 / .5001, -.25 / .5001, -.25 / .5001, 0, 0, 0, 0,
            1 / (s2 + 1e-4), -1 / (s2 + 1e-4), 0, 0]
    assert torch.allclose(a.advantages, torch.tensor(want), atol=1e-5)
    assert a.group_std_zero.tolist() == [False, True, False]
    none = group_advantages(r, 4, "none").advantages
    assert torch.allclose(none, torch.tensor([.75, -.25, -.25, -.25, 0, 0, 0, 0, 1, -1, 0, 0]))
    batch = group_advantages(r, 4, "batch").advantages
    assert torch.allclose(batch, none / (r.std() + 1e-4))
    assert dynamic_sampling_keep(r, 4).tolist() == [True, False, True]


def test_group_advantages_leave_out_unscored_samples():
    r = torch.tensor([1.0, float("nan"), 0.0, 0.0])  # mean over the 3 scored = 1/3
    a = group_advantages(r, 4, "none").advantages
    assert torch.allclose(a, torch.tensor([2 / 3, 0.0, -1 / 3, -1 / 3]), atol=1e-6)
    assert torch.isnan(nanstd(torch.tensor([1.0, float("nan")])))
    with pytest.raises(ValueError, match="num_generations"):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.zeros(4), 4, "std")


def test_token_logps_and_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g)
    tgt = torch.randint(0, 7, (2, 3), generator=g)
    for t in (1.0, 0.7):
        want = torch.log_softmax(logits / t, -1).gather(-1, tgt[..., None]).squeeze(-1)
        assert torch.allclose(token_logps(logits, tgt, t), want, atol=1e-6)
    uniform = torch.zeros(1, 1, 8)
    assert token_entropy(uniform).item() == pytest.approx(math.log(8), abs=1e-6)
    lp, ent = token_logps(logits, tgt, 0.7, with_entropy=True)
    assert torch.allclose(ent, token_entropy(logits, 0.7)) and torch.allclose(lp, token_logps(logits, tgt, 0.7))


def test_bad_arguments_have_actionable_errors():
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logps_(), ADV, MASK, loss_type="ppo")
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(logps_(), ADV, MASK, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="num_items_in_batch"):
        grpo_loss(logps_(), ADV, MASK, loss_type="dapo")
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(logps_(), ADV, MASK, loss_type="bnpo", beta=0.1)


def test_model_gradient_equals_reinforce_gradient_at_first_update():
    """On a real (tiny) policy: with mu = 1 the GRPO gradient is -(1/B) sum_i A_i/|o_i| sum_t grad log pi."""
    torch.manual_seed(0)
    model = build_model(preset("tiny-qwen3", vocab_size=64))
    model.init_weights(std=0.1)
    ids = torch.randint(1, 64, (3, 9))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    adv = torch.tensor([0.7, -1.2, 0.4])

    def logps():
        logits = model(ids)[:, 4:8]  # positions 4..7 predict completion tokens 5..8
        return token_logps(logits, ids[:, 5:9])

    model.zero_grad()
    grpo_loss(logps(), adv, mask, loss_type="grpo").loss.backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lp = logps()
    (-(adv[:, None] * lp * mask).sum(-1).div(mask.sum(-1)).mean()).backward()
    g2 = [p.grad.clone() for p in model.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g1, g2))
    assert any(a.abs().sum() > 0 for a in g1)
