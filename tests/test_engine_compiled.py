"""Compiled decode (r1/engine/compiled.py) against the eager engine it stands in for.

The deferred-write logic (each row's cached past + its own new K/V; storage written after the
graph) is checked for every model family and KV dtype through dynamo with the "eager" backend,
which traces exactly what inductor would get but compiles in seconds; one case per family runs
the real inductor backend, where the single-row linears become fused reductions.
"""
import pytest
import torch

from r1.config import preset
from r1.engine.compiled import CompiledDecode, compile_blocker
from r1.engine.engine import EngineConfig, LLMEngine
from r1.engine.gemv import gemv
from r1.engine.paged_attention import native_unavailable
from r1.engine.quant import quantize_model
from r1.engine.sampling import SamplingParams
from r1.model import build_model

from test_engine import prompts, run, tiny


def tiny_mla():
    """tiny-deepseek with dense feed-forward layers: MLA under compile (routed MoE stays eager)."""
    torch.manual_seed(0)
    m = build_model(preset("tiny-deepseek", vocab_size=256, first_k_dense_replace=2))
    m.init_weights(std=0.1)
    return m.eval()


MODELS = {"mla": tiny_mla, "moe": lambda: tiny("tiny-deepseek"), "qwen3": lambda: tiny("tiny-qwen3"), "llama": lambda: tiny("tiny-llama")}


def engine(model, compile: bool, backend: str = "inductor", **cfg):
    config = EngineConfig(block_size=4, num_blocks=96, compile=compile, **cfg)
    if compile and backend != "inductor" and compile_blocker(model) is None:
        return LLMEngine(model, None, config, compiled=CompiledDecode(model, config.max_num_seqs, backend))
    return LLMEngine(model, None, config)


def outputs(eng, ps, sp):
    return [o.outputs[0] for o in run(eng, [(p, sp) for p in ps])]


def check_same(model, backend, kv="auto", n=4):
    ps = prompts(n, seed=3)
    sp = SamplingParams(temperature=0, max_tokens=10, logprobs=0)
    for group in ([ps[0]], ps):  # one row (its own graph: the gemv one), then several
        want = outputs(engine(model, False, kv_cache_dtype=kv), group, sp)
        eng = engine(model, True, backend, kv_cache_dtype=kv)
        got = outputs(eng, group, sp)
        assert [c.token_ids for c in got] == [c.token_ids for c in want]
        # generated code may round x / scale differently at a .5 boundary: an int8 code one apart
        tol = 1e-3 if kv == "int8" and backend == "inductor" else 1e-4
        for g, w in zip(got, want):
            assert [x["logprob"] for x in g.logprobs] == pytest.approx([x["logprob"] for x in w.logprobs], abs=tol)
        assert eng.runner.compiled is not None
    return eng


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("kv", ["auto", "int8"])
def test_deferred_decode_step_matches_eager(name, kv):
    check_same(MODELS[name](), "eager", kv)


@pytest.mark.parametrize("name,kv", [("qwen3", "int8"), ("moe", "auto")])
def test_inductor_decode_matches_eager(name, kv):
    check_same(MODELS[name](), "inductor", kv)


@pytest.mark.skipif(native_unavailable() is not None, reason=f"paged kernel: {native_unavailable()}")
@pytest.mark.parametrize("name", ["qwen3", "llama", "mla"])
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_in_place_graph_matches_eager(name, backend, one_thread):
    """At one thread, GQA decode steps compile with the kernel inside (r1::paged_write_attend,
    which writes the cache itself); aot_eager also functionalizes that write. MLA layers do not
    attend in place and keep the gather graph. Greedy rows, then prefix-shared seeded samples
    (a GRPO rollout's shape), against the eager engine."""
    model = MODELS[name]()
    eng = check_same(model, backend)
    graphs = {key for keys in eng.runner.compiled._checked.values() for key in keys}  # (one row?, in place?)
    assert eng.runner.in_place_attention and graphs == {(False, name != "mla")}  # the several-rows engine
    ps = prompts(3, seed=11)
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=12, n=3, seed=5, logprobs=0)
    reqs = [(p, sp) for p in ps]
    want = run(engine(model, False), reqs)
    got = run(engine(model, True, backend), reqs)
    for g, w in zip(got, want):
        assert [c.token_ids for c in g.outputs] == [c.token_ids for c in w.outputs]
        for gc, wc in zip(g.outputs, w.outputs):
            assert [x["logprob"] for x in gc.logprobs] == pytest.approx([x["logprob"] for x in wc.logprobs], abs=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_one_token_prompt_compiles_like_eager(threads):
    """A 1-token prompt: its prefill step is a one-token-per-row step before the cache has any
    storage (it runs eagerly), and the first compiled step's cached past is padded to 2."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = tiny("tiny-qwen3")
        sp = SamplingParams(temperature=0, max_tokens=6, logprobs=0)
        for ps in ([[7]], [[7], [9, 4]]):  # one row (its own graph), then several
            want = outputs(engine(model, False), ps, sp)
            got = outputs(engine(model, True, "eager"), ps, sp)
            assert [c.token_ids for c in got] == [c.token_ids for c in want]
    finally:
        torch.set_num_threads(before)


def test_compiled_step_writes_the_same_cache_as_eager():
    """After a few steps, the paged store holds the same entries either way (the compiled path
    scatters what the graph encoded)."""
    model = tiny("tiny-qwen3")
    ps = prompts(3, seed=5)
    sp = SamplingParams(temperature=0, max_tokens=6)
    caches = []
    for compile in (False, True):
        eng = engine(model, compile, "eager", kv_cache_dtype="int8", prefix_caching=False)
        outputs(eng, ps, sp)
        caches.append(eng.cache)
    a, b = caches
    assert a.store.keys() == b.store.keys()
    for k in a.store:
        assert torch.equal(a.store[k], b.store[k]), k
        assert torch.allclose(a.scales[k], b.scales[k]), k


@pytest.mark.parametrize("wdtype", [torch.float32, torch.int8])
def test_gemv_compiled_equals_linear(wdtype):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 96)
    w = torch.randn(40, 96)
    scales = None
    if wdtype is torch.int8:
        scales = w.abs().amax(1) / 127
        w = (w / scales[:, None]).round().to(torch.int8)
    bias = torch.randn(40)
    want = torch.nn.functional.linear(x, w.float() * (scales[:, None] if scales is not None else 1), bias)
    got = torch.compile(gemv, dynamic=False)(x, w, scales, bias)
    assert got.shape == (1, 1, 40)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_int8_weights_compile_only_the_single_row_step():
    model = tiny("tiny-qwen3")
    quantize_model(model, "int8")
    eng = engine(model, True, "eager")
    assert eng.runner.compiled.max_rows == 1
    ps = prompts(3, seed=7)
    sp = SamplingParams(temperature=0, max_tokens=8)
    want = [c.token_ids for c in outputs(engine(model, False), ps[:1], sp)]
    assert [c.token_ids for c in outputs(eng, ps[:1], sp)] == want


def test_packed_layouts_and_moe_stay_eager_and_say_why():
    model = tiny("tiny-qwen3")
    quantize_model(model, "int4", group_size=32)
    eng = engine(model, True)
    assert eng.runner.compiled is None and "Int4Linear" in eng.compile_skipped
    m = build_model(preset("tiny-deepseek", vocab_size=256, n_routed_experts=32, n_group=1, topk_group=1))
    moe = m.model.layers[1].mlp
    moe.experts[3].up_proj = torch.nn.Linear(moe.experts[3].up_proj.in_features,
                                             moe.experts[3].up_proj.out_features, bias=True)
    eng = engine(m.eval(), True)  # experts that differ cannot be banked: every expert would run
    assert eng.runner.compiled is None and "32 routed experts that could not be banked" in eng.compile_skipped


@pytest.mark.parametrize("weights", ["float", "int8"])
def test_many_experts_compile_banked_and_match_eager(weights):
    """32 routed experts: banked (r1/engine/moe.py), the compiled step gathers the routed ones."""
    torch.manual_seed(0)
    m = build_model(preset("tiny-deepseek", vocab_size=256, n_routed_experts=32, n_group=4, topk_group=2))
    m.init_weights(std=0.1)
    m.eval()
    if weights == "int8":
        quantize_model(m, "int8")
    ps = prompts(2, seed=5)
    sp = SamplingParams(temperature=0, max_tokens=8)
    want = [c.token_ids for c in outputs(engine(m, False), ps[:1], sp)]
    eng = engine(m, True, "eager")
    assert eng.runner.compiled is not None and m.model.layers[1].mlp.__dict__["_bank"] is not None
    assert [c.token_ids for c in outputs(eng, ps[:1], sp)] == want


def test_moe_all_experts_form_equals_routed_loop():
    """What a compiled graph runs for a MoE layer (every expert, gate-weighted) is the routed loop."""
    model = tiny("tiny-deepseek")
    moe = model.model.layers[1].mlp
    x = torch.randn(2, 7, moe.gate.weight.shape[1])
    torch.testing.assert_close(moe.forward_all_experts(x), moe(x), atol=1e-6, rtol=1e-5)


def tiny_gguf_blocks():
    """tiny-llama with every linear and the embedding on GGUF blocks (Q4_0 where the rows allow its
    planes, Q8_0 elsewhere): the model turbo compiles around the r1::gguf_matmul / gguf_rows ops."""
    from gguf import GGMLQuantizationType as Q, quants

    from r1.engine import gguf_linear as gl
    from r1.engine.quant import replace_module

    if gl.native_unavailable():
        pytest.skip(gl.native_unavailable())
    m = tiny("tiny-llama")
    for name, lin in [(n, x) for n, x in m.named_modules() if isinstance(x, torch.nn.Linear)]:
        t = Q.Q4_0 if lin.in_features % 64 == 0 and name != "lm_head" else Q.Q8_0
        blocks = torch.from_numpy(quants.quantize(lin.weight.detach().numpy(), t))
        replace_module(m, name, gl.GGUFLinear(blocks, t, tuple(lin.weight.shape), name=name))
    emb = m.model.embed_tokens.weight.detach()
    m.model.embed_tokens = gl.GGUFEmbedding(torch.from_numpy(quants.quantize(emb.numpy(), Q.Q8_0)), Q.Q8_0,
                                            tuple(emb.shape), torch.float32)
    return m.eval()


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_gguf_blocks_compile_and_agree(backend):
    model = tiny_gguf_blocks()
    assert compile_blocker(model) is None
    check_same(model, backend)
