"""GGUF blocks -> quantized layers without passing through float: the repacked codes and scales decode to
exactly what `gguf.quants` (checked against ggml's C code in test_gguf_quants.py) dequantizes."""
import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q, quants

from r1.engine.quant_gguf import int4_from_gguf, int4_parts, int8_from_gguf, raw_to_float
from r1.formats.gguf_file import RawTensor

N, K = 48, 512  # K a multiple of Q4_K's 256-weight super-block


def raw(qtype, seed=0):
    rng = np.random.default_rng(seed)
    if qtype == Q.Q4_K:  # gguf cannot quantize K-quants: random blocks with sane fp16 scales
        block, size = GGML_QUANT_SIZES[qtype]
        data = rng.integers(0, 256, (N, K // block, size), dtype=np.uint8)
        data[..., 0:2] = np.float16(rng.uniform(0.001, 0.01, (N, K // block, 1))).view(np.uint8)
        data[..., 2:4] = np.float16(rng.uniform(0.001, 0.01, (N, K // block, 1))).view(np.uint8)
        data = data.reshape(N, -1)
    else:
        w = (rng.standard_normal((N, K)) * 0.05 + rng.uniform(-0.05, 0.05, (N, 1))).astype(np.float32)
        data = quants.quantize(w, qtype)
    return RawTensor("blk.0.ffn_up.weight", qtype, (N, K), data)


def gguf_float(r):
    return torch.from_numpy(quants.dequantize(r.data, r.ggml_type))


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q4_K])
def test_int4_repacking_decodes_bit_exactly(qtype):
    r = raw(qtype)
    m = int4_from_gguf(r)
    assert m.group_size == 32 and m.packed is not None
    # fp32 exactness argument in r1/engine/quant_gguf.py: (q - 8) * s is exact and the zero is exact here,
    # so both sides are one rounding of the same real number.
    assert torch.equal(m.dequantize(), gguf_float(r))
    m.compute_dtype = None  # the kernel in fp32, to compare at fp32 tolerance
    x = torch.randn(3, K)
    fast, ref = m(x), m.forward_reference(x)
    assert (fast - ref).abs().max() <= 2e-6 * ref.abs().max()


def test_q4_0_is_symmetric_and_q4_1_zero_is_min_plus_8_steps():
    codes, scales, zeros = int4_parts(raw(Q.Q4_0))
    assert torch.equal(zeros, torch.zeros_like(zeros)) and codes.max() <= 15
    r = raw(Q.Q4_1)
    codes, scales, zeros = int4_parts(r)
    first = r.data[0, :20]  # fp16 d, fp16 m, 16 bytes of nibbles
    d, m = first[0:2].view(np.float16)[0], first[2:4].view(np.float16)[0]
    assert scales[0, 0] == np.float32(d) and zeros[0, 0] == np.float32(m) + 8 * np.float32(d)
    assert codes[0, :16].tolist() == (first[4:20] & 15).tolist() and codes[0, 16:32].tolist() == (first[4:20] >> 4).tolist()


def test_q8_0_requantized_per_row_within_half_a_row_step():
    r = raw(Q.Q8_0)
    m = int8_from_gguf(r)
    want = gguf_float(r)
    step = m.scales[:, None]
    assert ((m.dequantize() - want).abs() <= step / 2 * (1 + 1e-5)).all()  # lossy: Q8_0 has a scale per 32
    assert not torch.equal(m.dequantize(), want)


def test_raw_to_float_matches_gguf_for_float_types():
    w = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    for qtype, arr in ((Q.F32, w), (Q.F16, w.astype(np.float16))):
        r = RawTensor("t", qtype, (4, 64), arr.view(np.uint8).reshape(4, -1))
        assert torch.equal(raw_to_float(r), torch.from_numpy(arr.astype(np.float32)))
