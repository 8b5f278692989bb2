"""Request bodies over the server's limit get 413 unread, and never stall other clients."""
import json
import threading
import time

import httpx
import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, tiny_engine

MODEL = "m"
LIMIT = 1 << 20  # 1 MiB for the test server


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(tiny_engine(), model_name=MODEL, max_body_bytes=LIMIT)) as s:
        yield s


def big_chat(n_bytes: int) -> bytes:
    return json.dumps({"model": MODEL, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "x" * n_bytes}]}).encode()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_a_body_over_the_limit_is_413_by_its_length(server, path):
    r = httpx.post(server.url + path, content=big_chat(2 * LIMIT), timeout=30)
    assert r.status_code == 413
    msg = r.json()["error"] if path.startswith("/api/") else r.json()["error"]["message"]
    assert "1 MiB" in msg and "--max-body-mb" in msg


def test_a_chunked_body_over_the_limit_is_413(server):
    body = big_chat(2 * LIMIT)

    def chunks():  # no Content-Length: the limit must count what arrives
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    r = httpx.post(server.url + "/v1/chat/completions", content=chunks(), timeout=30)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_a_body_under_the_limit_is_served(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=big_chat(LIMIT // 4), timeout=120,
                   headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text  # served, or refused for its length in tokens: not 413
    assert r.status_code == 200 or "context" in r.json()["error"]["message"]


def test_health_stays_fast_while_huge_bodies_arrive(server):
    """Two clients post 50 MiB bodies over and over while a third polls /health: every poll answers within
    0.5 s (unlimited, each such body was read, parsed and tokenized on the event loop: seconds each)."""
    body, stop = big_chat(50 * 2**20), threading.Event()
    codes: list[int] = []

    def post():
        while not stop.is_set():
            try:
                codes.append(httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30).status_code)
            except httpx.HTTPError:  # the server may close the connection on a refused upload
                codes.append(-1)

    threads = [threading.Thread(target=post, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        worst = 0.0
        for _ in range(20):
            t0 = time.perf_counter()
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert worst < 0.5, worst
    assert codes and set(codes) <= {413, -1}, set(codes)
