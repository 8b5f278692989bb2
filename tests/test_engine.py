"""Engine: paged == contiguous, continuous batching, prefix cache, preemption, abort, limits."""
import os

import pytest
import torch

from r1.config import preset
from r1.engine.engine import EngineConfig, LLMEngine
from r1.engine.generate import generate
from r1.engine.sampling import SamplingParams
from r1.model import build_model


def tiny(name, seed=0):
    torch.manual_seed(seed)
    m = build_model(preset(name, vocab_size=256))
    m.init_weights(std=0.1)
    return m.eval()


@pytest.fixture(scope="module", params=["tiny-deepseek", "tiny-qwen3"])
def model(request):
    return tiny(request.param)


def prompts(n, seed=0, lo=3, hi=40):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 256, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def run(engine, reqs):
    """reqs: list of (prompt, params); returns token ids per request, in order."""
    for i, (p, sp) in enumerate(reqs):
        engine.add_request(str(i), p, sp)
    out = {}
    while engine.has_unfinished():
        for o in engine.step():
            if o.finished:
                out[o.request_id] = o
    return [out[str(i)] for i in range(len(reqs))]


def test_paged_engine_equals_contiguous_generate(model):
    ps = prompts(5)
    sp = SamplingParams(temperature=0, max_tokens=12)
    want = [c.token_ids for c in generate(model, ps, sp)]
    got = [o.outputs[0].token_ids for o in run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64)),
                                               [(p, sp) for p in ps])]
    assert got == want


def test_continuous_batching_matches_running_alone_with_seeds(model):
    ps = prompts(6, seed=1)
    sps = [SamplingParams(temperature=0.9, top_p=0.9, max_tokens=10 + i, seed=100 + i) for i in range(6)]
    alone = [run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64)), [(p, sp)])[0].outputs[0].token_ids
             for p, sp in zip(ps, sps)]
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, max_num_batched_tokens=24))
    done, added = {}, 0
    while added < 6 or eng.has_unfinished():
        if added < 6:  # requests join while others are mid-decode
            eng.add_request(str(added), ps[added], sps[added])
            added += 1
        for o in eng.step():
            if o.finished:
                done[o.request_id] = o.outputs[0].token_ids
    assert [done[str(i)] for i in range(6)] == alone


def test_prefix_cache_hits_do_not_change_outputs(model):
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64))
    p = prompts(1, seed=2, lo=30, hi=31)[0]
    sp = SamplingParams(temperature=0, max_tokens=8)
    first = run(eng, [(p, sp)])[0]
    second = run(eng, [(p, sp)])[0]
    assert first.num_cached_tokens == 0 and second.num_cached_tokens == 28  # 7 full blocks of 4
    assert second.outputs[0].token_ids == first.outputs[0].token_ids
    # n samples of one prompt share its prompt blocks: computed once, then hit n-1 times
    eng2 = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64))
    (multi,) = run(eng2, [(p, SamplingParams(temperature=1.0, max_tokens=6, n=4, seed=5))])
    assert eng2.blocks.hits == 3 * 7
    assert len({tuple(o.token_ids) for o in multi.outputs}) > 1


def test_preemption_and_readmission_do_not_change_outputs(model):
    ps = prompts(6, seed=3, lo=10, hi=20)
    sp = SamplingParams(temperature=0, max_tokens=24)
    want = [o.outputs[0].token_ids for o in run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=256)),
                                                 [(p, sp) for p in ps])]
    small = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=24, prefix_caching=False))
    got = [o.outputs[0].token_ids for o in run(small, [(p, sp) for p in ps])]
    assert small.scheduler.num_preemptions > 0
    assert got == want
    assert small.blocks.num_free == 24


def test_abort_frees_every_block(model):
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64))
    for i, p in enumerate(prompts(5, seed=4)):
        eng.add_request(str(i), p, SamplingParams(temperature=0, max_tokens=50, n=2))
    for _ in range(4):
        eng.step()
    assert eng.blocks.num_free < 64
    for i in range(5):
        assert eng.abort(str(i))
    assert eng.blocks.num_free == 64 and not eng.has_unfinished() and eng.step() == []


def test_bad_requests_fail_clearly_and_leave_the_batch_alone(model):
    ps = prompts(3, seed=5)
    sp = SamplingParams(temperature=0, max_tokens=10)
    want = [o.outputs[0].token_ids for o in run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64)),
                                                 [(p, sp) for p in ps])]
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64))
    for i, p in enumerate(ps):
        eng.add_request(str(i), p, sp)
    eng.step()
    with pytest.raises(ValueError, match=r"prompt \(3 tokens\) \+ max_tokens \(5000\) = 5003 exceeds the context length of 1024"):
        eng.add_request("long", [1, 2, 3], SamplingParams(max_tokens=5000))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        eng.add_request("vocab", [1, 999], sp)
    with pytest.raises(ValueError, match="already in use"):
        eng.add_request("0", [1, 2], sp)
    with pytest.raises(ValueError, match="KV blocks"):
        eng.add_request("big", [1] * 200, SamplingParams(max_tokens=200))
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    out = {}
    while eng.has_unfinished():
        out.update({o.request_id: o.outputs[0].token_ids for o in eng.step() if o.finished})
    assert [out[str(i)] for i in range(3)] == want


def _rss_kb():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def test_memory_flat_over_1000_requests():
    model = tiny("tiny-qwen2")
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, max_num_seqs=32))
    sp = SamplingParams(temperature=0.7, max_tokens=3, seed=1)
    g = torch.Generator().manual_seed(0)

    def wave(k):
        for i in range(100):
            eng.add_request(f"{k}-{i}", torch.randint(1, 256, (8,), generator=g).tolist(), sp)
        while eng.has_unfinished():
            eng.step()

    wave(0)
    base = _rss_kb()
    for k in range(1, 10):
        wave(k)
    assert eng.blocks.num_free == 128 and not eng.requests and not eng.scheduler.running
    assert len(eng.blocks.by_hash) <= 128
    assert _rss_kb() - base < 20_000  # < 20 MB over 900 more requests


def test_logprobs_report_the_model_distribution(model):
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=64))
    (o,) = run(eng, [(prompts(1, seed=6)[0], SamplingParams(temperature=0, max_tokens=4, logprobs=3))])
    lps = o.outputs[0].logprobs
    assert len(lps) == 4
    for lp in lps:  # greedy: the chosen token is the most likely one
        assert lp["token_id"] == lp["top"][0][0] and abs(lp["logprob"] - lp["top"][0][1]) < 1e-6
        assert lp["top"][0][1] >= lp["top"][1][1] >= lp["top"][2][1]


@pytest.mark.parametrize("temperature", [0.0])
def test_mtp_speculative_greedy_is_token_identical_to_plain(temperature):
    model = tiny("tiny-deepseek", seed=3)
    ps = prompts(5, seed=7)
    sp = SamplingParams(temperature=temperature, max_tokens=20)
    plain = run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128)), [(p, sp) for p in ps])
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, speculative=True,
                                              max_num_batched_tokens=16))  # chunked prefill too
    spec = run(eng, [(p, sp) for p in ps])
    assert [o.outputs[0].token_ids for o in spec] == [o.outputs[0].token_ids for o in plain]
    assert eng.stats["spec_drafted"] > 0
    assert eng.blocks.num_free == 128


def test_speculation_stops_when_drafts_are_rarely_accepted_and_output_is_unchanged():
    model = tiny("tiny-deepseek", seed=3)
    ps = prompts(4, seed=8)
    sp = SamplingParams(temperature=0.0, max_tokens=24)
    plain = run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128)), [(p, sp) for p in ps])
    # an acceptance no drafter reaches: drafting stops after the probe, mid-generation
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, speculative=True,
                                              spec_min_acceptance=1.0, spec_probe_drafts=8))
    spec = run(eng, [(p, sp) for p in ps])
    assert [o.outputs[0].token_ids for o in spec] == [o.outputs[0].token_ids for o in plain]
    assert not eng.speculative and 8 <= eng.stats["spec_stopped_after"] == eng.stats["spec_drafted"] < 4 * 24
    assert eng.blocks.num_free == 128
    keep = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, speculative=True,
                                               spec_min_acceptance=1.0, spec_probe_drafts=0))
    run(keep, [(p, sp) for p in ps])
    assert keep.speculative and "spec_stopped_after" not in keep.stats
    with pytest.raises(ValueError, match="spec_min_acceptance"):
        EngineConfig(spec_min_acceptance=1.5)


def test_speculative_sampling_keeps_the_target_distribution():
    """Speculative sampling's output distribution equals p whatever the draft distribution q."""
    from r1.engine.speculative import draw, verify
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.1, 0.6, 0.1, 0.2])
    counts = torch.zeros(4)
    for _ in range(20000):
        d = draw(q, g)
        tok, _ = verify(p, q, d, g)
        counts[tok] += 1
    assert (counts / counts.sum() - p).abs().max() < 0.015


def test_speculation_refuses_models_without_mtp():
    with pytest.raises(ValueError, match="MTP"):
        LLMEngine(tiny("tiny-qwen3"), None, EngineConfig(speculative=True))


def test_auto_speculation_drafts_only_where_plain_steps_stay_eager():
    """speculative="auto" (the turbo profile's): draft with MTP modules, but not when single-row
    steps are compiled on CPU, where a compiled plain step beats an eager verify step."""
    model = tiny("tiny-deepseek", seed=3)
    assert LLMEngine(model, None, EngineConfig(speculative="auto")).speculative
    eng = LLMEngine(model, None, EngineConfig(speculative="auto", compile=True))  # compiles lazily: not here
    assert eng.runner.compiled is not None and not eng.speculative and "compiled" in eng.spec_skipped
    eng = LLMEngine(tiny("tiny-qwen3"), None, EngineConfig(speculative="auto"))
    assert not eng.speculative and "no MTP" in eng.spec_skipped
    with pytest.raises(ValueError, match="speculative 'yes'"):
        EngineConfig(speculative="yes")


def test_speculation_with_prefix_sharing_n_samples():
    """n samples of one prompt share its blocks while the MTP module drafts (regression: blocks
    were registered before an accepted draft's token was appended)."""
    model = tiny("tiny-deepseek", seed=4)
    p = prompts(1, seed=8, lo=20, hi=21)[0]
    sp = SamplingParams(temperature=0, max_tokens=16, n=8)
    plain = run(LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=256)), [(p, sp)])[0]
    eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=256, speculative=True))
    spec = run(eng, [(p, sp)])[0]
    assert [o.token_ids for o in spec.outputs] == [o.token_ids for o in plain.outputs]
    assert eng.blocks.hits > 0 and eng.blocks.num_free == 256


def test_vectorized_build_step_equals_the_row_by_row_reference():
    from r1.engine.kv_cache import PagedKVCache, build_step, build_step_reference
    from r1.engine.sequence import Sequence

    g = torch.Generator().manual_seed(0)
    cache = PagedKVCache(num_blocks=64, block_size=4, device="cpu")
    for trial in range(20):
        b = int(torch.randint(1, 6, (1,), generator=g))
        seqs, starts, tokens = [], [], []
        for _ in range(b):
            start = int(torch.randint(0, 30, (1,), generator=g))
            n = int(torch.randint(1, 9 if trial % 2 else 2, (1,), generator=g))  # prefill chunks and decode steps
            blocks = -(-(start + n) // 4) + int(torch.randint(0, 2, (1,), generator=g))
            seq = Sequence(seq_id=len(seqs), request_id=f"r{trial}", index=0, prompt_ids=list(range(start + n)),
                           params=SamplingParams())
            seq.block_table = torch.randperm(64, generator=g)[:blocks].tolist()
            seqs.append(seq), starts.append(start)
            tokens.append(torch.randint(0, 256, (n,), generator=g).tolist())
        fast, ref = build_step(cache, seqs, starts, tokens, "cpu"), build_step_reference(cache, seqs, starts, tokens, "cpu")
        for a, r in [(fast[1], ref[1]), (fast[2], ref[2]), (fast[0].index, ref[0].index),
                     (fast[0].key_pos, ref[0].key_pos), (fast[0]._slots, ref[0]._slots)]:
            assert torch.equal(a, r)
        wf, wr = fast[0]._where, ref[0]._where
        assert (wf is None) == (wr is None) == bool((fast[0]._slots.numel() == fast[1].numel()))
        assert wf is None or all(torch.equal(x, y) for x, y in zip(wf, wr))


def test_int8_kv_cache_round_trip_is_within_half_a_step():
    from r1.engine.kv_cache import PagedKVCache

    cache = PagedKVCache(num_blocks=4, block_size=4, device="cpu", kv_dtype="int8")
    x = torch.randn(6, 2, 8) * torch.tensor([0.01, 1.0, 100.0, 0.5, 3.0, 0.0])[:, None, None]
    slots = torch.tensor([3, 0, 7, 12, 5, 9])
    cache.write(0, "k", x, slots)
    back = cache.read(0, "k", slots[None])[0]
    step = x.reshape(6, -1).abs().amax(-1) / 127  # (6,) one quantization step per token
    assert ((back - x).reshape(6, -1).abs().amax(-1) <= step / 2 + 1e-7).all()
    assert torch.equal(back[5], x[5])  # an all-zero vector stays exact


def test_int8_kv_cache_logits_stay_close_to_the_float_cache(model):
    ps = prompts(4, seed=11)
    outs = {}
    for dtype in ("auto", "int8"):
        eng = LLMEngine(model, None, EngineConfig(block_size=4, num_blocks=128, kv_cache_dtype=dtype))
        sp = SamplingParams(temperature=0.0, max_tokens=6, logprobs=5)
        outs[dtype] = run(eng, [(p, sp) for p in ps])
    for a, b in zip(outs["auto"], outs["int8"]):
        ta, tb = a.outputs[0].token_ids, b.outputs[0].token_ids
        agree = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), len(ta))
        assert agree >= 2  # the prefill already reads its keys and values back from the int8 cache
        for la, lb in zip(a.outputs[0].logprobs[:agree], b.outputs[0].logprobs[:agree]):
            assert abs(la["logprob"] - lb["logprob"]) < 0.05


def test_inverse_cdf_sampling_follows_the_distribution():
    from r1.engine.sampling import inverse_cdf, uniforms

    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).expand(20000, 4)
    got = torch.bincount(inverse_cdf(probs, torch.rand(20000, generator=torch.Generator().manual_seed(1))),
                         minlength=4) / 20000
    assert got[1] == 0 and torch.allclose(got, probs[0], atol=0.015)  # a zero-probability token never
    assert inverse_cdf(probs[:3] * 5, torch.tensor([0.0, 0.999999, 0.1])).tolist() == [0, 3, 2]  # unnormalized
    a, b = (uniforms([torch.Generator().manual_seed(s) for s in (7, 8)], "cpu") for _ in range(2))
    assert torch.equal(a, b) and a[0] != a[1]  # each row's draw from its own generator


def test_sequence_token_slice_equals_all_ids_slice():
    from r1.engine.sequence import Sequence

    seq = Sequence(0, "r", 0, [5, 6, 7], SamplingParams(), output_ids=[8, 9])
    for a in range(6):
        for b in range(a, 7):
            assert seq.token_slice(a, b) == seq.all_ids[a:b], (a, b)


def test_non_finite_logits_end_the_request_with_an_error():
    """A model whose logits are NaN (a broken checkpoint) ends each request with finish_reason "error"
    and says why; LLM raises it (r1 run prints it as one line) instead of returning an empty answer."""
    from r1.engine.engine import LLM, ModelOutputError

    m = tiny("tiny-llama")
    with torch.no_grad():
        m.model.norm.weight[3] = float("nan")
    eng = LLMEngine(m, None, EngineConfig(block_size=4, num_blocks=64))
    (out,) = run(eng, [([1, 2, 3], SamplingParams(temperature=0, max_tokens=5))])
    c = out.outputs[0]
    assert c.finish_reason == "error" and "not finite" in c.error and c.token_ids == []
    assert eng.blocks.num_free == 64  # its KV blocks are back
    with pytest.raises(ModelOutputError, match="not finite"):
        LLM(m).generate([[1, 2, 3]], SamplingParams(max_tokens=3))
    healthy = tiny("tiny-llama")  # and the check costs a healthy model nothing it would notice
    (ok,) = run(LLMEngine(healthy, None, EngineConfig(block_size=4, num_blocks=64)),
                [([1, 2, 3], SamplingParams(temperature=0, max_tokens=5))])
    assert ok.outputs[0].finish_reason == "length" and len(ok.outputs[0].token_ids) == 5
