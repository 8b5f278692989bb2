"""Grammar-constrained decoding (r1/serve/structured.py) against a real model's logits: every
sampled completion obeys the grammar once the reasoning is over, whatever the model prefers."""
import json

import pytest
import torch

from r1.chat.r1_template import THINK_CLOSE
from r1.chat.tool_calls import parse_tool_calls
from r1.engine.engine import LLMEngine, EngineConfig
from r1.serve.structured import GrammarCompiler, GrammarError
from serve_helpers import VOCAB, has_processor_hook, r1_tokenizer, tiny_model

pytest.importorskip("xgrammar")

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"},
                                           "color": {"enum": ["red", "green"]}},
          "required": ["ok", "n", "color"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo"]}, "days": {"type": "integer"}},
    "required": ["city", "days"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"],
        "additionalProperties": False}}}]


@pytest.fixture(scope="module")
def tok():
    return r1_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def gc(tok):
    return GrammarCompiler(tok, VOCAB, tok.eos_token_ids)


def decode(model, tok, prompt_ids, proc, max_tokens=200, seed=0, force=()):
    """Sample from the model's real logits through the processor; `force` = tokens written as
    the engine writes a forced </think> (the sampled token is replaced)."""
    g = torch.Generator().manual_seed(seed)
    out, force = [], list(force)
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = model(torch.tensor([prompt_ids + out]), last_only=True)[0, -1].float().clone()
            logits = proc(out, logits)
            tok_id = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            if force:
                tok_id = force.pop(0)
            if tok_id in tok.eos_token_ids:
                return out, "stop"
            out.append(tok_id)
    return out, "length"


def check_schema(obj):
    assert set(obj) == {"ok", "n", "color"}
    assert isinstance(obj["ok"], bool) and isinstance(obj["n"], int) and obj["color"] in ("red", "green")


def test_json_schema_holds_for_every_seed(model, tok, gc):
    prompt = tok.encode("Answer in JSON:")
    compiled = gc.json_schema(SCHEMA)
    for seed in range(6):
        proc = gc.processor(compiled, wait_for_reasoning=False)
        out, reason = decode(model, tok, prompt, proc, seed=seed)
        assert reason == "stop", tok.decode(out)  # the grammar ends the answer with an eos
        check_schema(json.loads(tok.decode(out)))
        assert proc.rejected == 0


def test_unconstrained_model_does_not_write_json(model, tok, gc):
    # the control: the same model without the processor writes no JSON at all
    out, _ = decode(model, tok, tok.encode("Answer in JSON:"), lambda ids, lg: lg, max_tokens=30)
    with pytest.raises(json.JSONDecodeError):
        json.loads(tok.decode(out))


def test_mask_waits_for_the_end_of_reasoning(model, tok, gc):
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "hi"}]))
    assert tok.decode(prompt).endswith("<think>\n")
    compiled = gc.json_schema(SCHEMA)
    proc = gc.processor(compiled, wait_for_reasoning=True)
    think = [int(t) for t in torch.randint(100, 40000, (5,), generator=torch.Generator().manual_seed(1))]
    close = tok.encode(THINK_CLOSE)
    logits = torch.randn(VOCAB)
    # inside the reasoning the logits pass through untouched
    assert torch.equal(proc(think[:3], logits.clone()), logits)
    out, reason = decode(model, tok, prompt, proc, seed=2, force=think + close)
    text = tok.decode(out)
    reasoning, _, answer = text.partition(THINK_CLOSE)
    assert reason == "stop" and reasoning  # free text before </think> ...
    check_schema(json.loads(answer))  # ... JSON after it


def test_json_object_prefix_is_always_valid(model, tok, gc):
    compiled = gc.json_object()
    proc = gc.processor(compiled, wait_for_reasoning=False)
    out, reason = decode(model, tok, tok.encode("JSON:"), proc, max_tokens=60, seed=5)
    text = tok.decode(out)
    if reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # cut by the length limit: still a prefix the grammar accepts
        assert text.lstrip().startswith("{") and proc.accepts(out)


def test_tool_call_grammar_is_parsed_back(model, tok, gc):
    proc = gc.processor(gc.tool_calls(TOOLS), wait_for_reasoning=False)
    out, reason = decode(model, tok, tok.encode("call a tool"), proc, max_tokens=300, seed=0)
    assert reason == "stop"
    content, calls = parse_tool_calls(tok.decode(out))
    assert content.strip() == "" and len(calls) == 1
    args = json.loads(calls[0].arguments)
    assert (calls[0].name, sorted(args)) in [("get_weather", ["city", "days"]), ("get_time", ["zone"])]


def test_shared_processor_tracks_each_history(model, tok, gc):
    # n > 1 sequences share one processor: interleaved calls must mask exactly as separate ones
    compiled = gc.json_schema(SCHEMA)
    shared = gc.processor(compiled, wait_for_reasoning=False)
    a, b = tok.encode('{"ok": true'), tok.encode('{"ok": false, "n": 1')
    for k in range(1, max(len(a), len(b)) + 1):
        for hist in (a[:k], b[:k]):
            own = gc.processor(compiled, wait_for_reasoning=False)
            lg = torch.randn(VOCAB, generator=torch.Generator().manual_seed(k))
            assert torch.equal(shared(hist, lg.clone()), own(hist, lg.clone()))


def test_bad_schemas_are_reported(gc):
    with pytest.raises(GrammarError, match="invalid JSON schema"):
        gc.json_schema({"type": "objectx"})
    with pytest.raises(GrammarError, match="must be an object"):
        gc.json_schema(["not", "a", "schema"])
    with pytest.raises(GrammarError, match="tool name"):
        gc.tool_calls([{"function": {"name": "bad\nname"}}])


@pytest.mark.skipif(not has_processor_hook(), reason="the engine's SamplingParams.logits_processors hook is not in yet")
def test_engine_hook_applies_processors_per_request(model, tok, gc):
    from r1.engine.sampling import SamplingParams

    eng = LLMEngine(model, tok, EngineConfig(num_blocks=256, block_size=16))
    compiled = gc.json_schema(SCHEMA)
    prompt = tok.encode("Answer in JSON:")
    eng.add_request("json", prompt, SamplingParams(max_tokens=120, seed=1, n=3,
                                                   logits_processors=[gc.processor(compiled, False)]))
    eng.add_request("free", prompt, SamplingParams(max_tokens=20, seed=1))  # same batch, no mask
    done = {}
    while eng.has_unfinished():
        for o in eng.step():
            if o.finished:
                done[o.request_id] = o
    for c in done["json"].outputs:
        assert c.finish_reason == "stop"
        check_schema(json.loads(c.text))
    with pytest.raises(json.JSONDecodeError):
        json.loads(done["free"].outputs[0].text)


def test_grammar_compilation_runs_off_the_event_loop(monkeypatch):
    """A schema that takes seconds to compile (a 20,000-value enum: ~3 s here) must not stall other
    clients. Shown by order, not by timing: compilation is held inside the compiler until /health has
    been answered; were it on the event loop, /health could not answer and would time out."""
    import threading

    import httpx

    from r1.serve.app import create_app
    from serve_helpers import LiveServer, tiny_engine

    entered, release = threading.Event(), threading.Event()
    real = GrammarCompiler._compile

    def held(self, grammar):
        entered.set()
        assert release.wait(120), "the test never released the compiler"
        return real(self, grammar)

    monkeypatch.setattr(GrammarCompiler, "_compile", held)
    body = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "pick one"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "pick", "schema": {"enum": ["a", "b"]}}}}
    with LiveServer(create_app(tiny_engine(), model_name="m")) as s:
        got = {}
        post = threading.Thread(target=lambda: got.update(
            r=httpx.post(s.url + "/v1/chat/completions", json=body, timeout=300)))
        post.start()
        try:
            assert entered.wait(60), "the request never reached the grammar compiler"
            health = httpx.get(s.url + "/health", timeout=30)  # the compiler is still held here
            assert not release.is_set()
        finally:
            release.set()
            post.join()
    assert health.status_code == 200
    assert got["r"].status_code == 200, got["r"].text


def test_a_schema_too_large_to_compile_quickly_is_refused_before_compiling(monkeypatch):
    """A 20,000-value enum (189 KB) took 4 s to compile here; it gets a 400 that names the limit, and
    the compiler is never called (so the refusal is immediate however slow the machine)."""
    import httpx

    from r1.serve.app import create_app
    from serve_helpers import LiveServer, tiny_engine

    calls = []
    real = GrammarCompiler._compile
    monkeypatch.setattr(GrammarCompiler, "_compile", lambda self, g: calls.append(1) or real(self, g))
    big = {"enum": [f"v{i}" for i in range(20000)]}
    chat = {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "pick one"}]}
    with LiveServer(create_app(tiny_engine(), model_name="m")) as s:
        r = httpx.post(s.url + "/v1/chat/completions", timeout=60, json={
            **chat, "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": big}}})
        assert r.status_code == 400, r.text
        assert "64 KiB" in r.json()["error"]["message"] and r.json()["error"]["param"].startswith("response_format")
        r = httpx.post(s.url + "/api/chat", timeout=60, json={**chat, "format": big, "stream": False})
        assert r.status_code == 400 and "64 KiB" in r.json()["error"], r.text
        assert not calls
        small = {"enum": [f"v{i}" for i in range(100)]}  # under the limit: compiled and served
        r = httpx.post(s.url + "/v1/chat/completions", timeout=120, json={
            **chat, "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": small}}})
        assert r.status_code == 200 and calls, r.text


def test_forced_tools_are_bounded_together():
    """Each tool under the limit, all of them over it: refused as a whole (a served prompt holding them
    usually overflows the context first; the compiler bounds them anyway)."""
    tok = r1_tokenizer()
    g = GrammarCompiler(tok, VOCAB, [tok.eos_token_id], max_schema_bytes=4096)
    tool = lambda i: {"type": "function", "function": {"name": f"t{i}", "parameters": {  # noqa: E731
        "type": "object", "properties": {"v": {"enum": [f"v{j}" for j in range(200)]}}}}}
    g.tool_calls([tool(0)])
    with pytest.raises(GrammarError, match="tool definitions: 8 KiB of JSON"):
        g.tool_calls([tool(i) for i in range(5)])
