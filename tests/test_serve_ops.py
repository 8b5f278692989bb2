"""Limits, errors and operations: error bodies naming the culprit, context and queue limits,
disconnects freeing KV blocks, /health while loading, /metrics, logging, graceful shutdown."""
import asyncio
import logging
import re
import threading
import time

import httpx
import pytest

from r1.commands.common import smollm2_gguf
from r1.serve.app import create_app
from serve_helpers import LiveServer, save_tiny_model_dir, tiny_engine, wait_until

MODEL = "m"
MSG = [{"role": "user", "content": "hello there"}]


def chat(**kw):
    return {"model": MODEL, "messages": MSG, **kw}


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(tiny_engine(max_num_seqs=4, max_waiting=64), model_name=MODEL)) as s:
        yield s


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


BAD = [  # (body, status, param, words in the message)
    (b"{bad json", 400, None, "not valid JSON"),
    (b"[1, 2]", 400, None, "JSON object"),
    (b'{"messages": []}', 400, "model", "required"),
    (b'{"model": "m", "messages": []}', 400, "messages", "at least 1"),
    (b'{"model": "m", "messages": [{"role": "bot", "content": "x"}]}', 400, "messages[0].role", "'user'"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}', 400, "temperature", "2"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "n", "1"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [""]}', 400, "stop[0]", "1 character"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}', 400, "top_logprobs", "logprobs"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}', 400, "tool_choice", "tools"),
    (b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', 400,
     "messages[0].content[0].type", "not supported"),
    (b'{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}', 404, "model", "does not exist"),
]


@pytest.mark.parametrize("body,status,param,words", BAD)
def test_openai_error_bodies(http, body, status, param, words):
    r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"] and err["type"]


def test_ollama_error_bodies_and_unknown_routes(http):
    r = http.post("/api/chat", content=b'{"model": "m", "messages": [{"role": "user"}], "options": {"top_p": 2}}')
    assert r.status_code == 400 and "options.top_p" in r.json()["error"]  # curl's form content type is fine
    assert http.post("/api/generate", json={"model": "x", "prompt": "hi"}).status_code == 404
    assert http.get("/v1/nope").json()["error"]["message"] == "no route GET /v1/nope"
    assert http.delete("/v1/models").status_code == 405


def test_context_limit_names_both_numbers(http):
    r = http.post("/v1/chat/completions", json=chat(max_tokens=2000))
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "max_tokens" and err["code"] == "context_length_exceeded"
    n_prompt = int(re.search(r"\((\d+) in the prompt", err["message"]).group(1))
    assert f"{n_prompt + 2000} were requested" in err["message"] and "1024 tokens" in err["message"]
    long = [{"role": "user", "content": "word " * 1100}]
    r = http.post("/v1/chat/completions", json={"model": MODEL, "messages": long})
    assert r.status_code == 400 and "maximum context length is 1024" in r.json()["error"]["message"]
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": [1, 2, 49152]})
    assert r.status_code == 400 and "outside the vocabulary" in r.json()["error"]["message"]


def test_queue_bound_answers_429():
    app = create_app(tiny_engine(max_num_seqs=1, max_waiting=2), model_name=MODEL)
    with LiveServer(app) as s:
        engine = app.state.r1.engine.engine

        async def go():
            async with httpx.AsyncClient(base_url=s.url, timeout=120) as c:
                async with c.stream("POST", "/v1/chat/completions", json=chat(max_tokens=900, stream=True)) as first:
                    assert first.status_code == 200
                    while not engine.scheduler.running:  # the one batch slot is taken
                        await asyncio.sleep(0.02)
                    reqs = [c.build_request("POST", "/v1/chat/completions", json=chat(max_tokens=5, stream=True, seed=i))
                            for i in range(5)]
                    rs = await asyncio.gather(*[c.send(r, stream=True) for r in reqs])
                    codes = sorted(r.status_code for r in rs)
                    shed = [r for r in rs if r.status_code == 429]
                    body = (await shed[0].aread()).decode()
                    headers = shed[0].headers
                    for r in rs:
                        await r.aclose()
                    return codes, body, headers
        codes, body, headers = asyncio.run(go())
        assert codes == [200, 200, 429, 429, 429]  # exactly the queue bound is admitted
        assert headers["retry-after"] and '"queue_full"' in body
        with httpx.Client(base_url=s.url) as c:
            m = c.get("/metrics").text
            shed = [float(x) for x in re.findall(r'r1_requests_total\{endpoint="(?:chat|admission)",status="429"\} (\S+)', m)]
            assert sum(shed) == 3


def test_disconnect_aborts_and_frees_kv(server, http):
    async def start_and_drop(n):
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            for i in range(n):
                async with c.stream("POST", "/v1/chat/completions", json=chat(max_tokens=900, stream=True, seed=i)) as r:
                    async for line in r.aiter_lines():
                        if '"reasoning_content"' in line:
                            break  # mid-stream: a token arrived; leaving the block closes the connection
    asyncio.run(start_and_drop(6))
    engine = server.server.config.app.state.r1.engine.engine
    assert wait_until(lambda: not engine.requests and engine.blocks.usage == 0, timeout=20)
    m = http.get("/metrics").text
    assert metric(m, "r1_kv_cache_usage_ratio") == 0 and metric(m, "r1_num_requests_running") == 0
    assert metric(m, r'r1_requests_total\{endpoint="chat",status="499"\}') >= 6
    t0 = time.monotonic()
    r = http.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert r.status_code == 200 and time.monotonic() - t0 < 15


def test_disconnect_while_queued_frees_the_slot():
    app = create_app(tiny_engine(max_num_seqs=1), model_name=MODEL)
    with LiveServer(app) as s:
        engine = app.state.r1.engine.engine
        done = threading.Event()

        def long_request():
            with httpx.Client(base_url=s.url, timeout=120) as c:
                c.post("/v1/chat/completions", json=chat())  # the rest of the context: ~1000 tokens
            done.set()
        threading.Thread(target=long_request, daemon=True).start()
        assert wait_until(lambda: len(engine.scheduler.running) == 1)

        async def queued_then_gone():
            async with httpx.AsyncClient(base_url=s.url, timeout=5) as c:
                with pytest.raises(httpx.ReadTimeout):
                    await c.post("/v1/chat/completions", json=chat(max_tokens=5), timeout=1.5)
        asyncio.run(queued_then_gone())
        # the queued request is gone long before the running one ends
        assert wait_until(lambda: not engine.scheduler.waiting, timeout=5) and not done.is_set()


@pytest.mark.slow
def test_health_503_while_loading_a_real_model():
    app = create_app(smollm2_gguf(), model_name="smollm2")
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=120) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        r = c.post("/v1/chat/completions", json={"model": "smollm2", "messages": MSG})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading" and r.headers["retry-after"]
        assert wait_until(lambda: c.get("/health").status_code == 200, timeout=300, interval=0.5)
        r = c.post("/v1/chat/completions", json={"model": "smollm2", "messages": MSG, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def test_load_from_a_folder_and_load_errors(tmp_path):
    folder = save_tiny_model_dir(tmp_path / "tiny")
    app = create_app(folder)
    with LiveServer(app) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        assert wait_until(lambda: c.get("/health").status_code == 200, timeout=60)
        r = c.post("/v1/chat/completions", json={"model": "tiny", "messages": MSG, "max_tokens": 3})
        assert r.status_code == 200 and r.json()["model"] == "tiny"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    app = create_app(tmp_path / "broken")
    with LiveServer(app) as s, httpx.Client(base_url=s.url) as c:
        assert wait_until(lambda: c.get("/health").json()["status"] == "error", timeout=30)
        h = c.get("/health")
        assert h.status_code == 503 and "broken" in h.json()["error"]
        r = c.post("/v1/chat/completions", json={"model": "broken", "messages": MSG})
        assert r.status_code == 503 and "failed to load" in r.json()["error"]["message"]
    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "missing")


def test_metrics(server, http):
    http.post("/v1/chat/completions", json=chat(max_tokens=5, seed=1))
    http.post("/v1/chat/completions", json=chat(max_tokens=5, seed=2))  # same prompt: prefix-cache hit
    m = http.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    text = m.text
    for name in ("r1_time_to_first_token_seconds_count", "r1_inter_token_latency_seconds_count",
                 "r1_e2e_request_latency_seconds_count", "r1_request_queue_time_seconds_count"):
        assert metric(text, name) >= 2
    assert metric(text, "r1_generation_tokens_total") >= 10 and metric(text, "r1_prompt_tokens_total") > 0
    assert metric(text, "r1_prefix_cache_hits_total") >= 1 and metric(text, "r1_prefix_cache_hit_tokens_total") >= 16
    for name in ("r1_num_requests_running", "r1_num_requests_waiting", "r1_kv_cache_usage_ratio",
                 "r1_spec_decode_num_draft_tokens_total", "r1_spec_decode_num_accepted_tokens_total"):
        metric(text, name)


def test_request_log_has_no_prompt(caplog):
    secret = "my-password-is-hunter2"
    for log_prompts in (False, True):
        app = create_app(tiny_engine(), model_name=MODEL, log_prompts=log_prompts)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="r1.serve"), LiveServer(app) as s:
            with httpx.Client(base_url=s.url, timeout=60) as c:
                body = {"model": MODEL, "messages": [{"role": "user", "content": secret}], "max_tokens": 2}
                assert c.post("/v1/chat/completions", json=body).status_code == 200
        lines = [r.getMessage() for r in caplog.records if r.name == "r1.serve"]
        assert any("POST /v1/chat/completions 200" in ln for ln in lines)
        assert any("prompt_tokens=" in ln for ln in lines)
        assert any(secret in ln for ln in lines) == log_prompts


def test_graceful_shutdown_finishes_or_aborts():
    # a short request finishes within a generous grace period; a long one is cut at a short one
    for grace, max_tokens, expect_full in ((60.0, 100, True), (0.3, None, False)):
        app = create_app(tiny_engine(), model_name=MODEL, shutdown_grace_s=grace)
        srv = LiveServer(app, timeout_graceful_shutdown=grace)
        got: dict = {}
        with srv:
            def stream():
                got["lines"] = lines = []
                with httpx.Client(base_url=srv.url, timeout=120) as c:
                    try:
                        with c.stream("POST", "/v1/chat/completions", json=chat(max_tokens=max_tokens, stream=True)) as r:
                            lines += [ln for ln in r.iter_lines() if ln]
                    except httpx.RemoteProtocolError:  # past the grace period the server cuts the stream
                        got["cut"] = True
            t = threading.Thread(target=stream)
            t.start()
            engine = app.state.r1.engine.engine
            assert wait_until(lambda: engine.scheduler.running, timeout=20)
        t.join(60)  # leaving the `with` stopped the server
        lines = got.get("lines", [])
        assert (lines[-1:] == ["data: [DONE]"]) == expect_full and got.get("cut", False) != expect_full
        assert not engine.requests and engine.blocks.usage == 0  # nothing left holding KV blocks


@pytest.mark.parametrize("stream", [False, True])
def test_non_finite_logits_are_a_500_naming_the_cause_and_the_server_stays_up(stream):
    import torch

    eng = tiny_engine()
    with torch.no_grad():
        eng.model.model.norm.weight[0] = float("nan")
    with LiveServer(create_app(eng, model_name=MODEL)) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        r = c.post("/v1/chat/completions", json=chat(max_tokens=4, stream=stream))
        if stream:  # the headers went out with 200: the error is the stream's last event
            assert r.status_code == 200 and '"code": "model_error"' in r.text.replace('":"', '": "')
            assert "not finite" in r.text
        else:
            assert r.status_code == 500 and r.json()["error"]["code"] == "model_error"
            assert "not finite" in r.json()["error"]["message"]
        assert c.get("/health").status_code == 200
