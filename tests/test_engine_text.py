"""Engine on the real SmolLM2 tokenizer/weights: streaming deltas, stop strings, thinking budget."""
import pytest

from r1.engine.engine import LLM
from r1.engine.sampling import SamplingParams


@pytest.fixture(scope="module")
def llm(smollm2_gguf):
    return LLM(smollm2_gguf, block_size=16, kv_cache_gb=0.05)


def chat(llm, q):
    return llm.tokenizer.apply_chat_template([{"role": "user", "content": q}])


def test_stream_deltas_add_up_to_the_final_text(llm):
    sp = SamplingParams(temperature=0, max_tokens=20)
    outs = list(llm.stream(chat(llm, "Describe the sea in one sentence."), sp))
    assert outs[-1].finished
    assert "".join(o.outputs[0].text_delta for o in outs) == outs[-1].outputs[0].text
    assert sum(len(o.outputs[0].token_ids_delta) for o in outs) == len(outs[-1].outputs[0].token_ids)
    assert outs[-1].outputs[0].text == llm.generate(chat(llm, "Describe the sea in one sentence."), sp)[0].outputs[0].text


def test_stop_string_is_cut_and_never_streamed(llm):
    prompt = chat(llm, "Count from 1 to 20, separated by commas.")
    full = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=40))[0].outputs[0].text
    stop = full[6:9]
    outs = list(llm.stream(prompt, SamplingParams(temperature=0, max_tokens=40, stop=[stop])))
    final = outs[-1].outputs[0]
    assert final.finish_reason == "stop" and final.text == full[: full.index(stop)]
    assert "".join(o.outputs[0].text_delta for o in outs) == final.text


def test_thinking_budget_forces_the_end_of_reasoning(llm):
    # the prompt opens a think block, as the R1 template does
    prompt = chat(llm, "What is 17 * 23?") + "<think>\n"
    sp = SamplingParams(temperature=0, max_tokens=60, thinking_budget=8)
    (o,) = llm.generate(prompt, sp)[0].outputs
    assert o.reasoning_tokens == 8
    reasoning, closed, answer = o.text.partition("</think>")
    assert closed and len(llm.tokenizer.encode(reasoning)) <= 10
    unbounded = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=60))[0].outputs[0]
    assert unbounded.reasoning_tokens > 8 and unbounded.text.find("</think>") != o.text.find("</think>")
