"""The native paged decode-attention kernel (r1/engine/paged_attention.py) against its reference
(gather + SDPA), and the engine's use of it: same tokens as the torch path, only where it applies."""
import pytest
import torch

from r1.config import preset
from r1.engine import paged_attention as pa
from r1.engine import native
from r1.engine.engine import EngineConfig, LLMEngine
from r1.engine.sampling import SamplingParams
from r1.model import build_model

needs_kernel = pytest.mark.skipif(pa.native_unavailable() is not None,
                                  reason=f"kernel not built here: {pa.native_unavailable()}")


def paged(b, H, KV, d, bs, lens, shared_blocks=0, seed=0, spread=1.0):
    """Random storage and block tables; rows 2i and 2i+1 share their first `shared_blocks` blocks."""
    g = torch.Generator().manual_seed(seed)
    width = max(-(-n // bs) for n in lens)
    num_blocks = b * width + 3
    k = torch.randn(num_blocks * bs, KV, d, generator=g) * spread
    v = torch.randn(num_blocks * bs, KV, d, generator=g)
    order = torch.randperm(num_blocks, generator=g)
    table = order[: b * width].view(b, width).clone()
    for i in range(1, b, 2):
        table[i, :shared_blocks] = table[i - 1, :shared_blocks]
    q = torch.randn(b, H, d, generator=g) * spread
    return q, k, v, table.contiguous(), torch.tensor(lens, dtype=torch.int64)


@needs_kernel
@pytest.mark.parametrize("H,KV,d,bs", [(4, 2, 32, 16), (4, 4, 16, 16), (8, 2, 64, 4), (6, 3, 40, 8), (2, 1, 128, 16)])
def test_kernel_equals_reference(H, KV, d, bs):
    lens = [1, bs, bs + 1, 3 * bs, 37, 5]
    q, k, v, table, lens_t = paged(len(lens), H, KV, d, bs, lens, shared_blocks=1)
    ref = pa.paged_decode_attention_reference(q, k, v, table, lens_t, bs, d ** -0.5)
    out = pa.paged_decode_attention(q, k, v, table, lens_t, bs, d ** -0.5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@needs_kernel
def test_kernel_peaked_scores_and_row_independence():
    # scores spread over hundreds: most weights underflow (the kernel counts those below e^-80 as 0)
    lens = [50, 50, 17, 64]
    q, k, v, table, lens_t = paged(4, 4, 2, 32, 16, lens, shared_blocks=2, spread=6.0)
    ref = pa.paged_decode_attention_reference(q, k, v, table, lens_t, 16, 1.0)
    out = pa.paged_decode_attention(q, k, v, table, lens_t, 16, 1.0)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # a row alone gives bit for bit what it gives in the batch (no cross-row state)
    for i in range(4):
        alone = pa.paged_decode_attention(q[i : i + 1], k, v, table[i : i + 1].contiguous(), lens_t[i : i + 1], 16, 1.0)
        assert torch.equal(alone[0], out[i])


@needs_kernel
def test_kernel_rejects_bad_inputs_by_name():
    q, k, v, table, lens = paged(2, 4, 2, 32, 16, [5, 9])
    with pytest.raises(ValueError, match="float32"):
        pa.paged_decode_attention(q.double(), k, v, table, lens, 16, 1.0)
    with pytest.raises(ValueError, match="lens must be in"):
        pa.paged_decode_attention(q, k, v, table, torch.tensor([5, 10_000]), 16, 1.0)
    with pytest.raises(ValueError, match="query heads"):
        pa.paged_decode_attention(q[:, :3], k, v, table, lens, 16, 1.0)


def tiny(name="tiny-qwen2"):
    torch.manual_seed(0)
    m = build_model(preset(name, vocab_size=256))
    m.init_weights(std=0.1)
    return m.eval()


def run(model, reqs, **config):
    eng = LLMEngine(model, None, EngineConfig(max_num_seqs=8, num_blocks=64, block_size=4, **config))
    for i, (p, sp) in enumerate(reqs):
        eng.add_request(str(i), p, sp, think_in_prompt=False)
    out = {}
    while eng.has_unfinished():
        for o in eng.step():
            if o.finished:
                out[o.request_id] = o
    return eng, [out[str(i)] for i in range(len(reqs))]


@needs_kernel
@pytest.mark.parametrize("name", ["tiny-qwen2", "tiny-qwen3", "tiny-llama"])
def test_engine_in_place_attention_gives_the_torch_paths_tokens(name, one_thread, monkeypatch):
    import r1.engine.kv_cache as kv

    calls = []
    real = kv.paged_decode_attention
    monkeypatch.setattr(kv, "paged_decode_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tiny(name)
    shared = list(range(3, 40))  # 37 tokens: the n=3 samples share its full blocks
    reqs = [(shared, SamplingParams(temperature=0, max_tokens=24, n=3, logprobs=0, ignore_eos=True)),
            ([7, 8, 9], SamplingParams(temperature=0, max_tokens=30, logprobs=0, ignore_eos=True)),
            (list(range(50, 61)), SamplingParams(temperature=0.8, seed=3, max_tokens=17, logprobs=0, ignore_eos=True))]
    eng, fast = run(model, reqs)
    assert eng.runner.in_place_attention and calls, "the kernel was not used"
    _, slow = run(model, reqs, decode_attention="torch")
    for a, b in zip(fast, slow):
        for ca, cb in zip(a.outputs, b.outputs):
            assert ca.token_ids == cb.token_ids
            lp_a = torch.tensor([e["logprob"] for e in ca.logprobs])
            lp_b = torch.tensor([e["logprob"] for e in cb.logprobs])
            torch.testing.assert_close(lp_a, lp_b, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_engine_keeps_the_torch_path_where_the_kernel_does_not_apply(monkeypatch):
    import r1.engine.kv_cache as kv

    calls = []
    monkeypatch.setattr(kv, "paged_decode_attention", lambda *a, **k: calls.append(1))
    sp = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # more than one thread: SDPA's parallel loop
        run(tiny(), [([1, 2, 3], sp)])
        torch.set_num_threads(1)
        eng, _ = run(tiny(), [([1, 2, 3], sp)], decode_attention="torch")
        assert not eng.runner.in_place_attention
        eng, _ = run(tiny(), [([1, 2, 3], sp)], kv_cache_dtype="int8")
        assert not eng.runner.in_place_attention
        eng, _ = run(tiny("tiny-deepseek"), [([1, 2, 3], sp)])  # MLA attends through its own path
    finally:
        torch.set_num_threads(n)
    assert not calls
    with pytest.raises(ValueError, match="decode_attention"):
        EngineConfig(decode_attention="flash")


def test_no_compiler_means_the_torch_path_with_a_reason(monkeypatch):
    monkeypatch.setattr(native, "compiler", lambda: None)
    pa._load.cache_clear()
    try:
        assert "no C compiler" in pa.native_unavailable()
        eng = LLMEngine(tiny(), None, EngineConfig(num_blocks=16))
        assert not eng.runner.in_place_attention
    finally:
        pa._load.cache_clear()
