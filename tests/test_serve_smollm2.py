"""The server over a real model (SmolLM2-135M-Instruct, Q4_1 GGUF) with the real clients."""
import json

import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, has_processor_hook, smollm2_tokenizer, wait_until

openai = pytest.importorskip("openai")
ollama = pytest.importorskip("ollama")
pytestmark = pytest.mark.slow
MSGS = [{"role": "user", "content": "Give a JSON object with the name and age of a person called Alice who is 30."}]


@pytest.fixture(scope="module")
def server(smollm2_gguf):
    import httpx

    with LiveServer(create_app(smollm2_gguf, model_name="smollm2")) as s:
        assert wait_until(lambda: httpx.get(s.url + "/health").status_code == 200, timeout=300, interval=0.5)
        yield s


def test_openai_chat_and_usage(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    r = c.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=12, temperature=0, logprobs=True)
    tok = smollm2_tokenizer()
    assert r.usage.prompt_tokens == len(tok.encode(tok.apply_chat_template(MSGS)))
    assert r.usage.completion_tokens == len(r.choices[0].logprobs.content) <= 12
    assert r.choices[0].message.content and r.choices[0].message.reasoning_content is None  # SmolLM2 does not think


@pytest.mark.skipif(not has_processor_hook(), reason="needs the engine's logits_processors hook")
def test_json_mode_every_time(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600)
    r = c.chat.completions.create(model="smollm2", messages=MSGS, max_tokens=200, n=8, seed=0, temperature=0.7,
                                  response_format={"type": "json_object"})
    for ch in r.choices:
        assert ch.finish_reason == "stop", ch.message.content
        assert isinstance(json.loads(ch.message.content), dict)


def test_ollama_stream_and_think(server):
    c = ollama.Client(host=server.url, timeout=300)
    parts = list(c.chat(model="smollm2", messages=MSGS, stream=True, options={"num_predict": 8, "temperature": 0}))
    assert parts[-1].done and parts[-1].eval_count == 8 and "".join(p.message.content for p in parts[:-1])
    with pytest.raises(ollama.ResponseError, match="does not support thinking"):
        c.chat(model="smollm2", messages=MSGS, think=True)
