"""Dequantization of every supported GGUF tensor type, checked against references of the block layouts.

Each case writes a tiny GGUF with `gguf.GGUFWriter`, reads it back with r1's reader, and compares to
(a) a per-block numpy transcription of ggml's `dequantize_row_*` (ggml-quants.c), written here
independently of both `gguf.quants` (what r1 uses) and transformers, and/or (b) transformers' own torch
dequantizer, a second implementation. Blocks come from `gguf.quants.quantize` where the package can
quantize the type, else from random bytes with sane fp16 scales.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as Q, GGUFWriter, quants

from r1.formats.gguf_file import SUPPORTED_TYPES, GGUFError, GGUFFile

ROWS, COLS = 6, 512  # COLS is a multiple of the 256-element K-quant super-block


def _f16(b: np.ndarray) -> np.ndarray:
    return b.view(np.float16).astype(np.float32).reshape(-1)


# --- references, transcribed from ggml-quants.c, one block at a time -------------------------------
def ref_q8_0(b):  # ggml_half d; int8 qs[32]
    return _f16(b[0:2]) * b[2:34].view(np.int8).astype(np.float32)


def ref_q4_0(b):  # ggml_half d; uint8 qs[16]: low nibbles are elements 0..15, high nibbles 16..31
    d, qs = _f16(b[0:2]), b[2:18].astype(np.int32)
    return np.concatenate([(qs & 0xF) - 8, (qs >> 4) - 8]).astype(np.float32) * d


def ref_q4_1(b):  # ggml_half d, m; uint8 qs[16]
    d, m, qs = _f16(b[0:2]), _f16(b[2:4]), b[4:20].astype(np.int32)
    return np.concatenate([qs & 0xF, qs >> 4]).astype(np.float32) * d + m


def _q5_bits(qh_bytes, qs):
    qh = int(qh_bytes.view("<u4")[0])
    lo = np.array([(qs[j] & 0xF) | (((qh >> j) << 4) & 0x10) for j in range(16)])
    hi = np.array([(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10) for j in range(16)])
    return np.concatenate([lo, hi]).astype(np.float32)


def ref_q5_0(b):  # ggml_half d; uint8 qh[4]; uint8 qs[16]
    return (_q5_bits(b[2:6], b[6:22].astype(np.int64)) - 16) * _f16(b[0:2])


def ref_q5_1(b):  # ggml_half d, m; uint8 qh[4]; uint8 qs[16]
    return _q5_bits(b[4:8], b[8:24].astype(np.int64)) * _f16(b[0:2]) + _f16(b[2:4])


def _scale_min_k4(j, q):  # get_scale_min_k4
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def ref_q4_k(b):  # ggml_half d, dmin; uint8 scales[12]; uint8 qs[128]
    d, dmin, sc, q = _f16(b[0:2])[0], _f16(b[2:4])[0], b[4:16].astype(np.int32), b[16:144].astype(np.int32)
    y = []
    for j, is_ in zip(range(0, 256, 64), range(0, 8, 2)):
        s1, m1 = _scale_min_k4(is_, sc)
        s2, m2 = _scale_min_k4(is_ + 1, sc)
        ql = q[j // 2:j // 2 + 32]
        y += [d * s1 * (ql & 0xF) - dmin * m1, d * s2 * (ql >> 4) - dmin * m2]
    return np.concatenate(y).astype(np.float32)


def ref_q5_k(b):  # ggml_half d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]
    d, dmin, sc = _f16(b[0:2])[0], _f16(b[2:4])[0], b[4:16].astype(np.int32)
    qh, qs = b[16:48].astype(np.int32), b[48:176].astype(np.int32)
    y, u1, u2 = [], 1, 2
    for j, is_ in zip(range(0, 256, 64), range(0, 8, 2)):
        s1, m1 = _scale_min_k4(is_, sc)
        s2, m2 = _scale_min_k4(is_ + 1, sc)
        ql = qs[j // 2:j // 2 + 32]
        y += [d * s1 * ((ql & 0xF) + np.where(qh & u1, 16, 0)) - dmin * m1,
              d * s2 * ((ql >> 4) + np.where(qh & u2, 16, 0)) - dmin * m2]
        u1, u2 = u1 << 2, u2 << 2
    return np.concatenate(y).astype(np.float32)


def ref_q6_k(b):  # uint8 ql[128]; uint8 qh[64]; int8 scales[16]; ggml_half d
    ql, qh = b[0:128].astype(np.int32), b[128:192].astype(np.int32)
    sc, d = b[192:208].view(np.int8).astype(np.float32), _f16(b[208:210])[0]
    y = np.zeros(256, np.float32)
    for n in range(2):  # two halves of 128
        L, H, S, Y = ql[64 * n:], qh[32 * n:], sc[8 * n:], 128 * n
        for l in range(32):
            is_ = l // 16
            q1 = ((L[l] & 0xF) | (((H[l] >> 0) & 3) << 4)) - 32
            q2 = ((L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4)) - 32
            q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32
            q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32
            y[Y + l], y[Y + l + 32] = d * S[is_] * q1, d * S[is_ + 2] * q2
            y[Y + l + 64], y[Y + l + 96] = d * S[is_ + 4] * q3, d * S[is_ + 6] * q4
    return y


REFERENCES = {Q.Q8_0: ref_q8_0, Q.Q4_0: ref_q4_0, Q.Q4_1: ref_q4_1, Q.Q5_0: ref_q5_0, Q.Q5_1: ref_q5_1,
              Q.Q4_K: ref_q4_k, Q.Q5_K: ref_q5_k, Q.Q6_K: ref_q6_k}
# ggml field offsets of fp16 scales in a block, so random blocks get finite, modest scales
FP16_FIELDS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def reference_dequant(blocks: np.ndarray, qtype: Q) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    flat = blocks.reshape(-1, size)
    return np.concatenate([REFERENCES[qtype](b) for b in flat]).reshape(*blocks.shape[:-1], -1)


def random_blocks(qtype: Q, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        data[..., off:off + 2] = rng.uniform(1e-3, 0.1, size=data.shape[:2]).astype(np.float16)[..., None].view(np.uint8)
    return data.reshape(rows, -1)


def write_one(path, name: str, qtype: Q, payload: np.ndarray) -> None:
    w = GGUFWriter(path, "llama")
    if qtype in (Q.F32, Q.F16):
        w.add_tensor(name, payload)
    else:
        w.add_tensor(name, payload, raw_dtype=qtype)  # uint8 blocks: the writer derives the element shape
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


QUANTIZABLE = [Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]  # gguf.quants.quantize supports these
HAND_BUILT = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K]


def test_every_supported_type_is_tested():
    assert set(SUPPORTED_TYPES) == {Q.F32, Q.F16, *QUANTIZABLE, *HAND_BUILT}


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, *QUANTIZABLE], ids=lambda q: q.name)
def test_quantized_roundtrip(tmp_path, qtype):
    rng = np.random.default_rng(int(qtype))
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    payload = x.astype(np.float16) if qtype == Q.F16 else x if qtype == Q.F32 else quants.quantize(x, qtype)
    write_one(tmp_path / "t.gguf", "w", qtype, payload)
    with GGUFFile(tmp_path / "t.gguf") as f:
        info = f.info("w")
        assert info.ggml_type == qtype and info.shape == (ROWS, COLS)
        got = f.tensor("w").numpy()
        raw = f.raw("w")
    assert raw.ggml_type == qtype and raw.shape == (ROWS, COLS)
    if qtype in REFERENCES:
        np.testing.assert_array_equal(got, reference_dequant(raw.data, qtype))
    elif qtype == Q.BF16:  # the top 16 bits of the float32 pattern
        want = (raw.data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_array_equal(got, payload.astype(np.float32))
    # and the values are the tensor that was quantized, within the type's precision
    tol = {Q.Q4_0: 0.25, Q.Q4_1: 0.25, Q.Q5_0: 0.12, Q.Q5_1: 0.12, Q.Q8_0: 0.02, Q.BF16: 0.02, Q.F16: 2e-3, Q.F32: 0}[qtype]
    assert np.abs(got - x).max() <= tol * np.abs(x).max()


@pytest.mark.parametrize("qtype", HAND_BUILT, ids=lambda q: q.name)
def test_k_quants_match_references(tmp_path, qtype):
    rng = np.random.default_rng(100 + int(qtype))
    blocks = random_blocks(qtype, ROWS, COLS, rng)
    write_one(tmp_path / "t.gguf", "w", qtype, blocks)
    with GGUFFile(tmp_path / "t.gguf") as f:
        got = f.tensor("w")
        np.testing.assert_array_equal(f.raw("w").data, blocks)
    assert got.shape == (ROWS, COLS) and torch.isfinite(got).all()
    if qtype in REFERENCES:
        np.testing.assert_allclose(got.numpy(), reference_dequant(blocks, qtype), rtol=1e-6, atol=1e-6)
    peer = pytest.importorskip("transformers.integrations.gguf.dequant")
    want = peer.dequantize(torch.from_numpy(blocks.copy()), int(qtype)).reshape(ROWS, COLS)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_transformers_agrees_on_legacy_quants(tmp_path):
    peer = pytest.importorskip("transformers.integrations.gguf.dequant")
    x = np.random.default_rng(7).standard_normal((ROWS, COLS)).astype(np.float32)
    for qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1):
        blocks = quants.quantize(x, qtype)
        write_one(tmp_path / f"{qtype.name}.gguf", "w", qtype, blocks)
        with GGUFFile(tmp_path / f"{qtype.name}.gguf") as f:
            got = f.tensor("w")
        want = peer.dequantize(torch.from_numpy(blocks.copy()), int(qtype)).reshape(ROWS, COLS)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_requested_dtype(tmp_path, dtype):
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    write_one(tmp_path / "t.gguf", "w", Q.BF16, quants.quantize(x, Q.BF16))
    with GGUFFile(tmp_path / "t.gguf") as f:
        t = f.tensor("w", dtype)
        ref = f.tensor("w")
    assert t.dtype == dtype and t.shape == (4, 64)
    assert torch.equal(t, ref.to(dtype))


def test_dims_are_reversed_into_torch_order(tmp_path):
    # A (2, 3, 64) array is written with ne = [64, 3, 2]; element [i, j, k] must come back in place.
    x = np.arange(2 * 3 * 64, dtype=np.float32).reshape(2, 3, 64)
    write_one(tmp_path / "t.gguf", "w", Q.F32, x)
    with GGUFFile(tmp_path / "t.gguf") as f:
        assert f.info("w").shape == (2, 3, 64)
        assert torch.equal(f.tensor("w"), torch.from_numpy(x))


def test_type_without_dequantizer_is_a_clear_error(tmp_path):
    blocks = np.zeros((2, GGML_QUANT_SIZES[Q.IQ2_XXS][1]), np.uint8)  # a valid layout r1 does not expand
    write_one(tmp_path / "t.gguf", "w", Q.IQ2_XXS, blocks)
    with GGUFFile(tmp_path / "t.gguf") as f:
        assert f.raw("w").ggml_type == Q.IQ2_XXS  # the blocks are still reachable
        with pytest.raises(GGUFError, match=r"t\.gguf.*'w'.*IQ2_XXS"):
            f.tensor("w")
