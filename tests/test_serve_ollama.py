"""The Ollama API through the real `ollama` client against a real server (tiny random model, SmolLM2's
tokenizer speaking the R1 chat format, so `think` has a `<think>` block to switch)."""
import json

import pytest

from r1.serve.app import create_app
from serve_helpers import LiveServer, has_processor_hook, r1_tokenizer, smollm2_tokenizer, tiny_engine

ollama = pytest.importorskip("ollama")

MODEL = "r1-tiny-test"
MSGS = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(tiny_engine(), model_name=MODEL)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return ollama.Client(host=server.url, timeout=120)


def test_chat_think_on_off(client):
    on = client.chat(model=MODEL, messages=MSGS, think=True, options={"num_predict": 16, "seed": 1})
    assert on.message.role == "assistant" and on.message.thinking
    assert on.done and on.done_reason == "length" and on.eval_count == 16
    off = client.chat(model=MODEL, messages=MSGS, think=False, options={"num_predict": 8, "seed": 1})
    assert off.message.thinking is None and off.message.content and off.eval_count == 8
    tok = r1_tokenizer()
    n_prompt = len(tok.encode(tok.apply_chat_template(MSGS) + "</think>\n\n"))
    # think=false closes the think block in the prompt; prompt_eval_count counts the prompt tokens
    # evaluated, as Ollama does: whole 16-token blocks found in the prefix cache are not
    assert 0 < off.prompt_eval_count <= n_prompt and (n_prompt - off.prompt_eval_count) % 16 == 0
    for r in (on, off):  # Ollama's timing fields, in nanoseconds
        assert r.total_duration >= r.eval_duration > 0 and r.prompt_eval_duration > 0 and r.load_duration == 0


def test_chat_streaming_thinking_then_content(client):
    parts = list(client.chat(model=MODEL, messages=MSGS, stream=True, think=True,
                             options={"num_predict": 24, "seed": 5, "temperature": 0.8}))
    *body, last = parts
    assert last.done and last.done_reason == "length" and last.eval_count == 24 and last.message.content == ""
    assert all(not p.done for p in body)
    thinking = "".join(p.message.thinking or "" for p in body)
    content = "".join(p.message.content or "" for p in body)
    whole = client.chat(model=MODEL, messages=MSGS, think=True, options={"num_predict": 24, "seed": 5, "temperature": 0.8})
    assert (thinking, content) == (whole.message.thinking, whole.message.content)
    assert sum(1 for p in body if p.message.thinking) >= 2  # the thinking streams too


def test_generate_and_context(client):
    r = client.generate(model=MODEL, prompt="Tell me a story", options={"num_predict": 6, "seed": 2}, think=False)
    assert r.done and r.eval_count == 6 and r.response and r.context
    r2 = client.generate(model=MODEL, prompt="Go on", context=r.context, options={"num_predict": 4}, think=False)
    assert r2.context[:len(r.context)] == r.context and len(r2.context) > len(r.context) + 4
    chunks = list(client.generate(model=MODEL, prompt="Hi", stream=True, raw=True, options={"num_predict": 5, "seed": 3}))
    assert chunks[-1].done and "".join(c.response for c in chunks[:-1]) == \
        client.generate(model=MODEL, prompt="Hi", raw=True, options={"num_predict": 5, "seed": 3}).response


def test_tags_show_ps(client):
    (m,) = client.list().models
    assert m.model == MODEL and m.size > 0 and m.details.family == "qwen2"
    show = client.show(MODEL)
    assert "thinking" in show.capabilities and "completion" in show.capabilities
    assert show.modelinfo["general.architecture"] == "qwen2" and "<think>" in show.template
    assert client.ps().models[0].context_length == 1024
    with pytest.raises(ollama.ResponseError) as e:
        client.show("nope")
    assert e.value.status_code == 404 and "does not exist" in e.value.error


def test_errors_are_ollama_shaped(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="llama3", messages=MSGS)
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model=MODEL, messages=MSGS, options={"num_predict": 5000})
    assert e.value.status_code == 400 and "1024" in e.value.error and "5000" in e.value.error
    # loading request: no messages -> done at once
    r = client.chat(model=MODEL, messages=[])
    assert r.done and r.done_reason == "load"


def test_think_on_a_model_without_thinking():
    app = create_app(tiny_engine(smollm2_tokenizer()), model_name="plain")
    with LiveServer(app) as s:
        c = ollama.Client(host=s.url)
        with pytest.raises(ollama.ResponseError) as e:
            c.chat(model="plain", messages=MSGS, think=True)
        assert e.value.status_code == 400 and "does not support thinking" in e.value.error
        r = c.chat(model="plain", messages=MSGS, options={"num_predict": 4})
        assert r.message.thinking is None and r.eval_count == 4


@pytest.mark.skipif(not has_processor_hook(), reason="needs the engine's logits_processors hook")
def test_format_schema(client):
    schema = {"type": "object", "properties": {"color": {"enum": ["blue", "red"]}, "n": {"type": "integer"}},
              "required": ["color", "n"], "additionalProperties": False}
    for seed in range(3):
        r = client.chat(model=MODEL, messages=MSGS, format=schema, think=False, options={"seed": seed, "num_predict": 200})
        obj = json.loads(r.message.content)
        assert r.done_reason == "stop" and obj["color"] in ("blue", "red") and isinstance(obj["n"], int)
