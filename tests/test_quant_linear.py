"""Quantized linear layers: each fused kernel equals its slow reference path (dequantize, then F.linear),
the quantizers' error is bounded by half a step, and the stored bits survive dtype and device moves."""
import pytest
import torch
import torch.nn.functional as F

from r1.engine.quant_linear import (
    FP8Linear,
    Int4Linear,
    dequantize_fp8,
    Int8Linear,
    int4_fits,
    pack_nibbles,
    quantize_int4,
    quantize_int8,
    unpack_int4_cpu,
    unpack_nibbles,
)
from r1.formats.safetensors_io import dequantize_fp8_block, quantize_fp8_block

# The kernels and F.linear sum in different orders; in fp32 that differs by a few ulps of the output's
# magnitude. In bf16 the inputs and output are rounded to 8 bits, so allow a few bf16 ulps instead.
TOL = {torch.float32: 2e-6, torch.bfloat16: 2e-2}


def _make(cls, w, b, group_size=32):
    return cls.from_float(w, group_size=group_size, bias=b) if cls is Int4Linear else cls.from_float(w, bias=b)


@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear, FP8Linear])
@pytest.mark.parametrize("shape", [(64, 128), (80, 96), (208, 256), (16, 32)])
@pytest.mark.parametrize("dtype,compute_dtype", [(torch.float32, None), (torch.float32, torch.bfloat16),
                                                 (torch.bfloat16, torch.bfloat16)])
def test_fast_path_equals_reference(cls, shape, dtype, compute_dtype):
    g = torch.Generator().manual_seed(sum(shape))
    w = torch.randn(shape, generator=g)
    b = torch.randn(shape[0], generator=g)
    m = _make(cls, w, b).to(dtype)
    m.compute_dtype = compute_dtype  # None: the kernel runs in fp32 (slow on CPU, but exact to fp32 rounding)
    x = torch.randn(2, 5, shape[1], generator=g).to(dtype)  # leading dims are flattened and restored
    fast, ref = m(x), m.forward_reference(x)
    assert fast.shape == (2, 5, shape[0]) and fast.dtype == dtype
    scale = ref.float().abs().max()
    # FP8 has no CPU kernel (dequantize + F.linear in the input's dtype), so it is fp32-exact either way
    tol = TOL[dtype if cls is FP8Linear else (compute_dtype or dtype)]
    assert (fast.float() - ref.float()).abs().max() <= tol * scale


@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear, FP8Linear])
def test_reference_path_is_a_plain_linear_of_the_dequantized_weight(cls):
    w, b = torch.randn(48, 64), torch.randn(48)
    m = _make(cls, w, b)
    x = torch.randn(3, 64)
    assert torch.equal(m.forward_reference(x), F.linear(x, m.dequantize(), b))


def test_int8_error_is_at_most_half_a_step_per_row():
    w = torch.randn(32, 100) * torch.logspace(-3, 1, 32)[:, None]  # rows of very different magnitude
    q, s = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    err = (q.float() * s[:, None] - w).abs()
    assert (err <= s[:, None] / 2 * (1 + 1e-5)).all()


@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_int4_error_is_at_most_half_a_step_per_group(group_size):
    w = torch.randn(16, 512) + torch.linspace(-2, 2, 512)  # groups offset from zero: needs the zero point
    q, s, z = quantize_int4(w, group_size)
    assert q.dtype == torch.uint8 and q.max() <= 15
    deq = ((q.float().view(16, -1, group_size) - 8) * s[..., None] + z[..., None]).view(16, 512)
    step = s.repeat_interleave(group_size, dim=1)
    assert ((deq - w).abs() <= step / 2 * (1 + 1e-4) + 1e-6).all()
    m = Int4Linear(q, s, z, group_size)
    assert torch.equal(m.dequantize(), deq)


def test_int4_constant_and_zero_groups_decode_exactly():
    w = torch.zeros(16, 64)
    w[1] = 0.37
    m = Int4Linear.from_float(w, 32)
    assert torch.equal(m.dequantize(), w)


@pytest.mark.parametrize("n", [16, 48, 64, 80, 208, 1536])
def test_cpu_packing_is_inverted_exactly_and_the_portable_copy_dropped(n):
    k = 96
    codes = torch.randint(0, 16, (n, k), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
    assert torch.equal(unpack_int4_cpu(packed, n, k), codes)
    assert torch.equal(unpack_nibbles(pack_nibbles(codes)), codes)
    m = Int4Linear(codes, torch.ones(n, k // 32), torch.zeros(n, k // 32), 32)
    assert m.qweight is None and m.packed.shape == (n, k // 2)  # 0.5 byte per weight at rest
    assert torch.equal(m.codes(), codes)
    assert torch.equal(m.export()["qweight"], pack_nibbles(codes))


@pytest.mark.parametrize("shape", [(256, 384), (200, 300)])
def test_fast_fp8_dequantization_is_bit_identical_to_the_loaders(shape):
    w = torch.randn(shape) * 3
    q, s = quantize_fp8_block(w)
    q[0, :3] = torch.tensor([448.0, -448.0, 0.0]).to(torch.float8_e4m3fn)  # extremes of e4m3
    assert torch.equal(dequantize_fp8(q, s, torch.bfloat16), dequantize_fp8_block(q, s, torch.bfloat16))
    assert torch.equal(dequantize_fp8(q, s), dequantize_fp8_block(q, s))


def test_dtype_moves_keep_fp8_bits_and_fp32_scales():
    w = torch.randn(200, 300)
    m = FP8Linear.from_float(w, bias=torch.randn(200))
    bits, scale = m.weight.clone(), m.weight_scale_inv.clone()
    m.to(torch.bfloat16)
    assert m.weight.dtype == torch.float8_e4m3fn and torch.equal(m.weight.view(torch.uint8), bits.view(torch.uint8))
    assert m.weight_scale_inv.dtype == torch.float32 and torch.equal(m.weight_scale_inv, scale)
    assert m.bias.dtype == torch.bfloat16  # the bias is an ordinary float parameter
    assert torch.equal(m.dequantize(), dequantize_fp8_block(bits, scale))


def test_int4_and_int8_follow_the_model_dtype():
    w = torch.randn(64, 64)
    for m in (Int4Linear.from_float(w, 32), Int8Linear.from_float(w)):
        codes = m.export()["qweight"].clone()
        m.to(torch.bfloat16)
        assert torch.equal(m.export()["qweight"], codes)  # integer codes untouched
        x = torch.randn(2, 64, dtype=torch.bfloat16)
        assert m(x).dtype == torch.bfloat16
        # an fp32 input into a bf16 module still works, in either compute mode
        assert m(x.float()).dtype == torch.float32
        m.compute_dtype = None
        assert (m(x.float()) - m.forward_reference(x.float())).abs().max() <= 2e-6 * m(x.float()).abs().max()
    with pytest.raises(ValueError, match="compute_dtype"):
        m.compute_dtype = torch.int8


def test_int4_shape_rules_and_errors():
    assert int4_fits(64, 128, 32) is None
    assert "multiple of 16" in int4_fits(40, 128, 32)
    assert "group size 16" in int4_fits(64, 128, 16)
    assert "multiple of the group size" in int4_fits(64, 96, 64)
    with pytest.raises(ValueError, match="no int4 kernel"):
        Int4Linear.from_float(torch.randn(40, 64), 32)
    with pytest.raises(ValueError, match="0..15"):
        Int4Linear(torch.full((16, 32), 16, dtype=torch.uint8), torch.ones(16, 1), torch.zeros(16, 1), 32)
    with pytest.raises(ValueError, match="scales have shape"):
        Int4Linear(torch.zeros(16, 64, dtype=torch.uint8), torch.ones(16, 1), torch.zeros(16, 1), 32)
    with pytest.raises(ValueError, match="NaN"):
        Int8Linear.from_float(torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="meta"):
        Int8Linear.from_float(torch.empty(4, 4, device="meta"))
    with pytest.raises(ValueError, match="weight_scale_inv has shape"):
        FP8Linear(torch.zeros(200, 64, dtype=torch.float8_e4m3fn), torch.ones(1, 1))
    with pytest.raises(ValueError, match="expected 64"):
        Int8Linear.from_float(torch.randn(16, 64))(torch.randn(2, 63))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear, FP8Linear])
def test_cuda_kernels_equal_reference(cls):
    w, b = torch.randn(512, 1024), torch.randn(512)
    m = _make(cls, w, b, group_size=128).to("cuda", torch.bfloat16)
    x = torch.randn(3, 1024, device="cuda", dtype=torch.bfloat16)
    fast, ref = m(x).float(), m.forward_reference(x).float()
    # the FP8 kernel also quantizes activations (1x128 blocks), so it is held to FP8's own precision
    tol = 6e-2 if cls is FP8Linear else TOL[torch.bfloat16]
    assert (fast - ref).abs().max() <= tol * ref.abs().max()
    back = m.to("cpu")  # and back: the CPU packing is rebuilt from the CUDA layout
    assert torch.equal(back.dequantize(), _make(cls, w, b, group_size=128).to(torch.bfloat16).dequantize())


@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear])
def test_misaligned_inputs_and_weights_are_safe(cls):
    # torch's int8pack kernel crashes the process on operands that start mid-cache-line; views at odd
    # offsets (a sliced activation, a tensor read zero-copy from a file) must be realigned first.
    w = torch.randn(512, 64)
    m = _make(cls, w, None)
    if cls is Int8Linear:
        storage = torch.empty(w.numel() + 1, dtype=torch.int8)
        storage[1:] = m.qweight.flatten()
        m = Int8Linear(storage[1:].view(512, 64), m.scales)
    base = torch.randn(4 * 64 + 1, dtype=torch.bfloat16)
    x = base[1:].view(4, 64)
    assert x.data_ptr() % 64 != 0
    ref = m.forward_reference(x).float()
    assert (m(x).float() - ref).abs().max() <= TOL[torch.bfloat16] * ref.abs().max()
