"""The GGUF block kernels (r1/engine/gguf_linear.py, kernels/gguf_matmul.c) against their references:
gguf's own dequantization (an independent implementation of every block layout) and a float matmul,
for each block type, each code path (AVX-512 / AVX2 / scalar builds of the same source, the Q4_0
planes), and the real SmolLM2 file loaded through them."""
import ctypes

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf import quants

from r1.engine import gguf_linear as gl
from r1.engine.native import build_library

pytestmark = pytest.mark.skipif(gl.native_unavailable() is not None, reason=f"no GGUF kernels: {gl.native_unavailable()}")

TYPES = (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)
# Activations are rounded to int8 per 32 values (as llama.cpp does): ~0.5% of a block's largest value
# per element, ~0.6% of the output's norm measured on random data. The bound leaves room, not slack
# for a wrong layout, which gives errors of order 1 (see test_a_wrong_layout_is_caught).
REL_TOL = 0.02


def random_blocks(t: Q, n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if t in (Q.Q4_0, Q.Q4_1, Q.Q8_0):  # gguf can quantize these: real blocks of a real weight
        return quants.quantize((rng.standard_normal((n, k)) * 0.05).astype(np.float32), t)
    block, size = quants.GGML_QUANT_SIZES[t]
    b = rng.integers(0, 256, (n, k // block, size), dtype=np.uint8)  # any bits are valid K-quant codes
    d = (rng.random((n, k // block)) * 0.01).astype(np.float16).view(np.uint8).reshape(n, k // block, 2)
    if t == Q.Q6_K:
        b[..., 208:210] = d
    else:
        b[..., 0:2] = d
        b[..., 2:4] = d
    return b.reshape(n, -1)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows", [1, 3, 40])  # 40 >= gemm_rows: the dequantize-and-GEMM path
def test_linear_matches_the_float_reference(t, rows):
    n, k = 48, 512
    lin = gl.GGUFLinear(torch.from_numpy(random_blocks(t, n, k)), t, (n, k), bias=torch.randn(n))
    ref_w = torch.from_numpy(quants.dequantize(random_blocks(t, n, k), t).copy())
    assert torch.allclose(lin.dequantize(), ref_w, rtol=0, atol=1e-6)  # every layout decodes exactly
    x = torch.randn(2, rows, k)
    y = lin(x)
    assert y.shape == (2, rows, n)
    assert rel(y, lin.forward_reference(x)) < REL_TOL


@pytest.mark.parametrize("t,k", [(Q.Q4_K, 1280), (Q.Q6_K, 1280), (Q.Q8_0, 1280), (Q.Q8_0, 800), (Q.Q4_0, 1280)],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_direct_paths_cover_partial_groups_and_rows(t, k):
    """K = 1280: 40 blocks of 32, so the 16-block groups of the direct paths end in a partial one (and
    five super-blocks for the K-quants); 800 gives Q8_0 an odd block count, which takes the common
    path. Five activation rows: four at a time, then one."""
    n = 24
    lin = gl.GGUFLinear(torch.from_numpy(random_blocks(t, n, k, seed=3)), t, (n, k))
    x = torch.randn(5, k)
    assert rel(lin(x), lin.forward_reference(x)) < REL_TOL


def test_a_wrong_layout_is_caught():
    """The tolerance has teeth: the same weight with its nibble halves swapped within each block
    (weights 0-15 read as 16-31, a plausible unpacking bug) is far outside it."""
    n, k = 32, 256
    lin = gl.GGUFLinear(torch.from_numpy(random_blocks(Q.Q4_0, n, k)), Q.Q4_0, (n, k))
    w = lin.weight_blocks.reference()
    swapped = w.view(n, k // 32, 2, 16).flip(2).reshape(n, k)
    x = torch.randn(4, k)
    assert rel(lin(x), x @ w.T) < REL_TOL
    assert rel(lin(x), x @ swapped.T) > 10 * REL_TOL


@pytest.mark.parametrize("rows", [1, 2, 3, 7])  # the planes kernel takes rows four at a time: every remainder
def test_q4_0_planes_equal_the_block_path(rows):
    n, k = 64, 1024
    data = torch.from_numpy(random_blocks(Q.Q4_0, n, k))
    blocks = gl.GGUFBlocks(data, Q.Q4_0, (n, k), "w")
    planes = gl.GGUFBlocks(data, Q.Q4_0, (n, k), "w").to_planes()
    if planes.planes is None:
        pytest.skip("no AVX512-VNNI: Q4_0 stays in blocks")
    x = torch.randn(rows, k)
    assert torch.allclose(planes.matmul(x), blocks.matmul(x), rtol=1e-5, atol=1e-5)
    assert torch.equal(planes.rows(None), blocks.rows(None))
    assert np.array_equal(planes.ggml_blocks(), data.numpy())


def _variant(tmp_path, flags: list[str]) -> ctypes.CDLL:
    dll, why = build_library(gl.SOURCE, ["-O3", "-march=native", *flags, "-fopenmp", "-fPIC", "-std=c11"],
                             gl.LINK_FLAGS)
    if dll is None:
        pytest.skip(why)
    dll.r1q_matmul.argtypes = gl._load()[0].r1q_matmul.argtypes
    return dll


@pytest.mark.parametrize("flags", [["-mno-avx512f", "-mno-avxvnni"], ["-mno-avx2", "-mno-avx512f", "-mno-avxvnni"]],
                         ids=["avx2", "scalar"])
def test_every_instruction_set_path_agrees(tmp_path, flags):
    """The AVX2 (maddubs, and the widening path of Q8_0) and plain C builds give the native build's
    results: the integer sums are exact, only float summation order differs."""
    dll = _variant(tmp_path, flags)
    n, k, m = 40, 512, 3
    x = torch.randn(m, k)
    for t in TYPES:
        data = torch.from_numpy(random_blocks(t, n, k))
        native = gl.GGUFBlocks(data, t, (n, k), "w").matmul(x)
        y = torch.empty(m, n)
        assert dll.r1q_matmul(int(t), data.data_ptr(), data.shape[1], n, k, x.data_ptr(), m, y.data_ptr(), 2) == 0
        # relative to the output's norm: the direct paths (Q4_K, Q6_K, Q8_0 on AVX512-VNNI) subtract
        # the offset term once per row where the common path does it per block, and an output near zero
        # carries the rounding of the large terms that cancelled in it
        assert rel(y, native) < 1e-5, (t.name, rel(y, native))


def test_embedding_rows_are_exact():
    n, k = 100, 256
    data = random_blocks(Q.Q4_K, n, k)
    emb = gl.GGUFEmbedding(torch.from_numpy(data), Q.Q4_K, (n, k), torch.float32)
    ids = torch.tensor([[3, 99, 0], [7, 7, 50]])
    ref = torch.from_numpy(quants.dequantize(data, Q.Q4_K).copy())
    assert torch.equal(emb(ids), ref[ids])
    with pytest.raises(IndexError, match="out of range"):
        emb(torch.tensor([100]))


def test_malformed_blocks_name_the_tensor():
    with pytest.raises(ValueError, match="blk.3.ffn_up.weight.*shape"):
        gl.GGUFLinear(torch.zeros(16, 17, dtype=torch.uint8), Q.Q4_0, (16, 256), name="blk.3.ffn_up.weight")
    with pytest.raises(ValueError, match="no GGUF kernel for Q2_K"):
        gl.GGUFLinear(torch.zeros(16, 84, dtype=torch.uint8), Q.Q2_K, (16, 256), name="w")
    with pytest.raises(ValueError, match="whole number"):
        gl.GGUFLinear(torch.zeros(16, 18, dtype=torch.uint8), Q.Q4_0, (16, 40), name="w")


def test_smollm2_through_the_block_kernels(smollm2_gguf):
    """The real Q4_1 file: the model on its blocks against the same file dequantized to float."""
    import r1
    from r1.engine.engine import LLM
    from r1.engine.sampling import SamplingParams

    model = gl.load_gguf_blocks(smollm2_gguf)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"GGUFLinear", "GGUFEmbedding"} <= kinds and "Linear" not in kinds
    ref = r1.load_model(smollm2_gguf)
    tok = r1.load_tokenizer(smollm2_gguf)
    prompts = ["What is the capital of France?", "Name three colors.", "How do I boil an egg?"]
    ids = [tok.encode(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True))
           for p in prompts]
    with torch.inference_mode():
        for i in ids:
            a, b = model(torch.tensor([i]))[0, -1], ref(torch.tensor([i]))[0, -1]
            assert a.argmax() == b.argmax()
            assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    sp = SamplingParams(temperature=0, max_tokens=8)
    outs = LLM(model, tokenizer=tok).generate(ids, sp)
    assert "Paris" in outs[0].outputs[0].text


def test_profiles_pick_the_blocks_for_large_files_only(smollm2_gguf, monkeypatch):
    from r1.engine import profiles

    assert not profiles.gguf_blocks_apply(smollm2_gguf, "cpu")  # 92 MiB: the earlier paths
    monkeypatch.setattr(profiles, "GGUF_BLOCKS_MIN_BYTES", 0)
    assert profiles.gguf_blocks_apply(smollm2_gguf, "cpu") and not profiles.gguf_blocks_apply(smollm2_gguf, "cuda")
    for name in ("base", "turbo"):
        model, overrides = profiles.load_for_profile(smollm2_gguf, name)
        assert isinstance(model.lm_head, gl.GGUFLinear) and "kv_cache_dtype" not in overrides


def test_a_blocks_model_saves_as_an_r1_quantized_checkpoint(smollm2_gguf, tmp_path):
    """export() gives r1's portable layouts (Q4_1 -> int4 exactly, the Q8_0 head -> int8), and the
    embedding's table is written from its blocks: the saved model predicts what the blocks model does."""
    from r1.engine.quant_io import load_quantized, save_quantized
    from r1.engine.quant_linear import Int4Linear

    model = gl.load_gguf_blocks(smollm2_gguf)
    layer = model.model.layers[0].mlp.gate_proj
    save_quantized(model, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    assert isinstance(back.model.layers[0].mlp.gate_proj, Int4Linear)
    assert torch.equal(back.model.layers[0].mlp.gate_proj.dequantize(), layer.dequantize())
    assert torch.equal(back.model.embed_tokens.weight, model.model.embed_tokens.dequantize())
    ids = torch.tensor([[28120, 905, 314, 253, 1345]])
    with torch.inference_mode():
        a, b = model(ids)[0, -1], back(ids)[0, -1]
    assert a.argmax() == b.argmax() and torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999


def test_a_changed_local_header_is_a_new_build(tmp_path, monkeypatch):
    """gguf_matmul.c includes gguf_vnni512.h: the build cache key covers the header, so editing it can
    never load a library built from the old one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src, hdr = tmp_path / "k.c", tmp_path / "k.h"
    src.write_text('#include "k.h"\nint value(void) { return VALUE; }\n')
    got = []
    for v in (1, 2):
        hdr.write_text(f"#define VALUE {v}\n")
        dll, why = build_library(src, ["-O1", "-fPIC"], [])
        if dll is None:
            pytest.skip(why)
        got.append(dll.value())
    assert got == [1, 2]
    assert len(list((tmp_path / "cache" / "r1" / "kernels").glob("k-*.so"))) == 2
