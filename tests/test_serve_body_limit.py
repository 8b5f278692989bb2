"""Request bodies over the server's limit get 413 unread, and never stall other clients."""
import json

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


def test_an_oversized_upload_is_refused_before_it_is_sent(server):
    """Shown by order, not timing: a client declares a 50 MiB body and sends 1 KiB of it. The 413 comes
    back while the rest is still unsent (a server that read bodies first would wait for it: the recv
    below times out), and /health answers meanwhile."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (50 * 2**20) + b"{" + b" " * 1023)
        head = b""
        while b"\r\n\r\n" not in head:
            part = sock.recv(4096)
            assert part, "the server closed the connection without answering"
            head += part
        assert head.startswith(b"HTTP/1.1 413"), head[:100]
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
