"""The OpenAI/DeepSeek API through the real `openai` client against a real server (uvicorn on
loopback, the engine over a tiny random model with SmolLM2's tokenizer and the R1 chat template)."""
import json

import httpx
import pytest

from r1.chat.reasoning import split_reasoning
from r1.serve.app import create_app
from serve_helpers import LiveServer, has_processor_hook, r1_tokenizer, tiny_engine

openai = pytest.importorskip("openai")
needs_hook = pytest.mark.skipif(not has_processor_hook(), reason="needs the engine's logits_processors hook")

MODEL = "r1-tiny-test"
MSGS = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(tiny_engine(), model_name=MODEL)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def prompt_len(messages, **kw):
    tok = r1_tokenizer()
    return len(tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True, **kw)))


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")


def test_non_streaming_reasoning_and_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=24, seed=7, logprobs=True,
                                       top_logprobs=2, extra_body={"thinking_budget": 6})
    (choice,) = r.choices
    msg = choice.message
    assert msg.role == "assistant" and msg.reasoning_content and msg.content
    assert choice.finish_reason == "length"
    u = r.usage
    assert u.prompt_tokens == prompt_len(MSGS)  # the tokenizer's count of the rendered prompt
    assert u.completion_tokens == 24 == len(choice.logprobs.content)  # one logprob per generated token
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.completion_tokens_details.reasoning_tokens == 6  # the budget, then </think> was forced
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in choice.logprobs.content)
    # the split is DeepSeek's: reasoning before </think>, the answer after, neither holds the tags
    assert "</think>" not in msg.reasoning_content + msg.content


def test_streaming_matches_non_streaming(client):
    kw = dict(model=MODEL, messages=MSGS, max_tokens=20, seed=11, extra_body={"thinking_budget": 8})
    whole = client.chat.completions.create(**kw).choices[0].message
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    kinds, reasoning, content = [], "", ""
    for ch in chunks[:-1]:
        (c,) = ch.choices
        d = c.delta
        if getattr(d, "reasoning_content", None):
            kinds.append("r")
            reasoning += d.reasoning_content
        if d.content:
            kinds.append("c")
            content += d.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert kinds.count("r") >= 2 and kinds.count("c") >= 2  # the reasoning streams, token by token
    assert "".join(kinds).find("c") > "".join(kinds).rfind("r")  # all reasoning before the answer
    assert (reasoning, content) == (whole.reasoning_content, whole.content)
    assert chunks[-2].choices[0].finish_reason == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == 20
    assert usage.prompt_tokens == prompt_len(MSGS)


def test_seed_n_stop_and_penalties(client):
    kw = dict(model=MODEL, messages=MSGS, max_completion_tokens=12, seed=3, temperature=0.9, top_p=0.9,
              presence_penalty=0.5, frequency_penalty=0.5)
    a = client.chat.completions.create(n=2, **kw)
    b = client.chat.completions.create(n=2, **kw)
    assert [c.message.reasoning_content for c in a.choices] == [c.message.reasoning_content for c in b.choices]
    assert len(a.choices) == 2 and a.choices[0].message.reasoning_content != a.choices[1].message.reasoning_content
    assert a.usage.completion_tokens == 24
    # a stop string taken from the reasoning the model writes with this seed cuts it there
    text = a.choices[0].message.reasoning_content
    stop = text.split()[2]
    c = client.chat.completions.create(stop=[stop], n=1, **kw)
    assert c.choices[0].finish_reason == "stop" and stop not in (c.choices[0].message.reasoning_content or "")


def test_thinking_disabled(client):
    r = client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=8, seed=1,
                                       extra_body={"thinking": {"type": "disabled"}})
    m = r.choices[0].message
    assert m.reasoning_content is None and m.content
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    assert r.usage.prompt_tokens == prompt_len(MSGS) + len(r1_tokenizer().encode("</think>\n\n"))


def test_earlier_reasoning_is_stripped_and_prefix_cached(client):
    history = MSGS + [{"role": "assistant", "content": "5", "reasoning_content": "2 plus 3 is 5"},
                      {"role": "user", "content": "And 3 + 4?"}]
    r1 = client.chat.completions.create(model=MODEL, messages=history, max_tokens=4, seed=1)
    inline = [*MSGS, {"role": "assistant", "content": "<think>2 plus 3 is 5</think>\n\n5"}, history[-1]]
    r2 = client.chat.completions.create(model=MODEL, messages=inline, max_tokens=4, seed=1)
    clean = [*MSGS, {"role": "assistant", "content": "5"}, history[-1]]
    assert r1.usage.prompt_tokens == r2.usage.prompt_tokens == prompt_len(clean)
    assert r1.choices[0].message == r2.choices[0].message  # same prompt, same seed
    # the second identical prompt found its full blocks in the prefix cache
    assert r2.usage.prompt_tokens_details.cached_tokens >= 16
    assert r2.usage.prompt_tokens_details.cached_tokens % 16 == 0


def test_completions_endpoint(client):
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6, logprobs=2, echo=True, seed=2)
    (c,) = r.choices
    assert c.text.startswith("Once upon a time") and len(c.logprobs.tokens) == 6
    assert r.usage.completion_tokens == 6
    r = client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=3, n=2)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3] and r.usage.completion_tokens == 12
    text = "".join(ch.choices[0].text for ch in client.completions.create(model=MODEL, prompt="x", max_tokens=5,
                                                                         stream=True, seed=4) if ch.choices)
    assert text == client.completions.create(model=MODEL, prompt="x", max_tokens=5, seed=4).choices[0].text


@needs_hook
def test_tools_round_trip(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Tokyo"]},
                                                               "days": {"type": "integer"}},
                             "required": ["city", "days"], "additionalProperties": False}}}]
    r = client.chat.completions.create(model=MODEL, messages=MSGS, tools=tools, tool_choice="required",
                                       max_tokens=300, seed=5, extra_body={"thinking_budget": 4})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    args = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and args["city"] in ("Paris", "Tokyo") and isinstance(args["days"], int)
    # stream: the same call arrives as a tool_calls delta
    chunks = list(client.chat.completions.create(model=MODEL, messages=MSGS, tools=tools, stream=True, max_tokens=300,
                                                 seed=5, tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                 extra_body={"thinking_budget": 4}))
    streamed = [tc for ch in chunks for tc in (ch.choices[0].delta.tool_calls or [])]
    assert [tc.function.name for tc in streamed] == ["get_weather"] and chunks[-1].choices[0].finish_reason == "tool_calls"
    # the tool's result goes back as a role: tool message and the model continues its turn
    follow = MSGS + [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})}]
    r2 = client.chat.completions.create(model=MODEL, messages=follow, tools=tools, max_tokens=6, seed=1)
    assert r2.choices[0].message.content and r2.choices[0].message.tool_calls is None
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


@needs_hook
def test_json_mode_parses_every_time(client):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
              "required": ["answer", "sure"], "additionalProperties": False}
    for seed in range(8):
        r = client.chat.completions.create(
            model=MODEL, messages=MSGS, max_tokens=200, seed=seed, extra_body={"thinking_budget": 4},
            response_format={"type": "json_schema", "json_schema": {"name": "sum", "schema": schema}})
        m = r.choices[0].message
        obj = json.loads(m.content)
        assert r.choices[0].finish_reason == "stop" and m.reasoning_content
        assert set(obj) == {"answer", "sure"} and isinstance(obj["answer"], int) and isinstance(obj["sure"], bool)


@needs_hook
def test_bad_response_format_is_400(client):
    with pytest.raises(openai.BadRequestError, match="invalid JSON schema") as e:
        client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectx"}}})
    assert e.value.body["param"] == "response_format.json_schema.schema"


def test_split_matches_the_library(server):
    # the raw completion (/v1/completions over the same rendered prompt) split by r1.chat gives
    # exactly what the chat endpoint returns
    tok = r1_tokenizer()
    prompt = tok.apply_chat_template(MSGS, add_generation_prompt=True)
    with httpx.Client(base_url=server.url, timeout=60) as h:
        for seed in (9, 10):
            raw = h.post("/v1/completions", json={"model": MODEL, "prompt": tok.encode(prompt), "max_tokens": 16,
                                                  "seed": seed}).json()["choices"][0]["text"]
            chat = h.post("/v1/chat/completions", json={"model": MODEL, "messages": MSGS, "max_tokens": 16, "seed": seed}
                          ).json()["choices"][0]["message"]
            assert raw and split_reasoning(raw, think_in_prompt=True) == (chat["reasoning_content"] or "", chat["content"])


def test_api_keys():
    app = create_app(tiny_engine(), model_name=MODEL, api_keys=["k1", "k2"])
    with LiveServer(app) as s:
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="k2", max_retries=0)
        assert good.models.list().data[0].id == MODEL
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="k3", max_retries=0).models.list()
        with httpx.Client(base_url=s.url) as h:
            assert h.get("/health").status_code == 200  # orchestrators probe without a key
            r = h.post("/api/chat", json={"model": MODEL, "messages": MSGS})
            assert r.status_code == 401 and "API key" in r.json()["error"]
            assert h.get("/v1/models", headers={"Authorization": "Basic k1"}).status_code == 401
            assert h.get("/").status_code == 200 and h.get("/config.json").json()["auth"] is True


def test_logit_bias_forces_and_bans_tokens(client):
    """OpenAI's semantics: the bias is added to the token's logit, so +100 forces it and -100 bans it."""
    tok = r1_tokenizer()
    forced = tok.encode(" blue")[0]
    r = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=6, temperature=0,
                                  logit_bias={str(forced): 100})
    assert r.choices[0].text == tok.decode([forced] * 6)
    plain = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=1, temperature=0, logprobs=0)
    first = tok.encode(plain.choices[0].text)[0]
    banned = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=1, temperature=0,
                                       logit_bias={str(first): -100})
    assert banned.choices[0].text != plain.choices[0].text
    chat = client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=4, temperature=0,
                                          logit_bias={str(forced): 100})
    m = chat.choices[0].message
    assert ((getattr(m, "reasoning_content", None) or "") + (m.content or "")).strip() == tok.decode([forced] * 4).strip()


@pytest.mark.parametrize("bias,culprit", [({"abc": 1}, "'abc'"), ({"99999999": 1}, "99999999"), ({"5": 101}, "101")])
def test_bad_logit_bias_is_a_400_naming_it(client, bias, culprit):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=2, logit_bias=bias)
    assert e.value.body["param"] == "logit_bias" and culprit in e.value.body["message"]


def test_the_schema_names_the_served_model(server):
    import httpx

    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    comps = schema["components"]["schemas"]
    assert comps["ChatCompletionRequest"]["properties"]["model"]["enum"] == [MODEL]
    assert comps["CompletionRequest"]["properties"]["model"]["enum"] == [MODEL]
