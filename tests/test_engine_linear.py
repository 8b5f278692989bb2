"""EngineLinear's oneDNN-packed inference path against F.linear, the reference."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from r1.engine.linear import EngineLinear, onednn_linear_available, use_engine_linears

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="this torch build has no oneDNN linear")


def make(bias: bool) -> EngineLinear:
    torch.manual_seed(0)
    lin = nn.Linear(96, 40, bias=bias)
    use_engine_linears(lin)
    assert type(lin) is EngineLinear
    lin.min_packed_elements = 0  # these test weights are below the size where packing pays
    return lin


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 96), (4, 96), (2, 3, 96), (65, 96)])
def test_packed_path_equals_f_linear(bias, shape):
    lin = make(bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        got = lin(x)
    assert "_packed_weight" in lin.__dict__  # the packed path ran
    torch.testing.assert_close(got, F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)


def test_packed_copy_follows_in_place_updates():
    lin = make(True)
    x = torch.randn(3, 96)
    with torch.inference_mode():
        before = lin(x)
    with torch.no_grad():
        lin.weight.mul_(-2.0)  # an optimizer step is an in-place update like this
    with torch.inference_mode():
        after = lin(x)
    torch.testing.assert_close(after, F.linear(x, lin.weight, lin.bias), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after, before)


def test_training_takes_the_plain_path_with_gradients():
    lin = make(True)
    x = torch.randn(5, 96)
    lin(x).sum().backward()
    assert lin.weight.grad is not None and "_packed_weight" not in lin.__dict__


def test_small_weights_stay_on_f_linear():
    lin = nn.Linear(96, 40)
    use_engine_linears(lin)
    with torch.inference_mode():
        lin(torch.randn(2, 96))
    assert "_packed_weight" not in lin.__dict__


def test_swap_keeps_tied_weights_and_state_dict():
    emb = nn.Embedding(40, 96)
    head = nn.Linear(96, 40, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    keys = set(model.state_dict())
    assert use_engine_linears(model) == 1
    assert model["head"].weight is emb.weight and set(model.state_dict()) == keys
