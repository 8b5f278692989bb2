"""Run by tests/test_turbo_dispatch.py in a child process (so ATEN_CPU_CAPABILITY applies to the
whole process): greedy tokens of one model under base, turbo, and turbo with its compiled step
switched off, one row at a time (the compiled graph) and several rows together; JSON on stdout."""
import json
import sys

from r1.engine.engine import LLM
from r1.engine.runtime import runtime_report
from r1.engine.sampling import SamplingParams

PROMPTS = ["What is 347 + 858?", "What is 12 * 7?", "hello, who are you?", "What is 90 - 45?"]


def tokens(llm: LLM) -> dict:
    sp = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    ids = [llm.tokenizer.encode(llm.tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                                                  add_generation_prompt=True)) for p in PROMPTS]
    one = [list(llm.generate([i], sp)[0].outputs[0].token_ids) for i in ids[:2]]
    many = [list(o.outputs[0].token_ids) for o in llm.generate(ids, sp)]
    return {"one": one, "many": many, "compiled": llm.engine.runner.compiled is not None}


path = sys.argv[1]
out = {"runtime": runtime_report(),
       "base": tokens(LLM(path, profile="base")),
       "turbo": tokens(LLM(path, profile="turbo")),
       "turbo_eager": tokens(LLM(path, profile="turbo", compile=False))}
print(json.dumps(out))
