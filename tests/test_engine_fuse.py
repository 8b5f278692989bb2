"""Fast paths against their references: fused projections, fbgemm int8, the turbo profile."""
import copy

import pytest
import torch

from r1.config import preset
from r1.engine.fuse import fuse_projections
from r1.engine.quant import quantize_model
from r1.engine.quant_fbgemm import DynamicInt8Linear, fbgemm_available, use_fbgemm
from r1.model import build_model


@pytest.mark.parametrize("name", ["tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-deepseek"])
def test_fused_projections_equal_unfused(name):
    torch.manual_seed(0)
    m = build_model(preset(name)).eval()
    m.init_weights(std=0.1)
    fused = copy.deepcopy(m)
    assert fuse_projections(fused) > 0
    ids = torch.randint(0, 512, (2, 11))
    with torch.no_grad():
        assert (fused(ids) - m(ids)).abs().max() < 1e-5


def test_fused_int8_rows_concatenate_exactly():
    torch.manual_seed(0)
    m = build_model(preset("tiny-qwen2")).eval()
    m.init_weights(std=0.1)
    quantize_model(m, "int8")
    fused = copy.deepcopy(m)
    fuse_projections(fused)
    ids = torch.randint(0, 512, (2, 7))
    with torch.no_grad():
        assert (fused(ids) - m(ids)).abs().max() < 1e-5


@pytest.mark.skipif(not fbgemm_available(), reason="fbgemm not in this torch build")
def test_fbgemm_int8_close_to_its_reference():
    torch.manual_seed(0)
    m = build_model(preset("tiny-llama")).eval()
    m.init_weights(std=0.05)
    quantize_model(m, "int8")
    ref = copy.deepcopy(m)
    assert use_fbgemm(m) > 0
    assert any(isinstance(x, DynamicInt8Linear) for x in m.modules())
    ids = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        a, b = ref(ids), m(ids)  # weight-only int8 vs int8 weights x dynamically quantized activations
    assert ((a - b).norm() / a.norm()).item() < 0.05
