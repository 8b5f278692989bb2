"""The evaluation harness with a scripted backend: prompts, metrics, reports, CLI, JSONL files."""
import argparse
import json

import pytest

from r1.eval import report
from r1.eval.backend import Generation
from r1.eval.metrics import pass_at_k
from r1.eval.runner import EvalConfig, load_problems, render_prompt, run_eval
from r1.tasks.prompting import MATH_INSTRUCTION


class ScriptedBackend:
    """Test double: answers each prompt from `script(problem, sample_index)`; knows its
    problems by their question text, renders chats with a toy template."""

    def __init__(self, problems, script, gen_prompt="<|assistant|>"):
        self.problems, self.script, self.gen_prompt = problems, script, gen_prompt
        self.calls = []

    def render(self, messages):
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + self.gen_prompt

    def count_tokens(self, text):
        return len(text.split())

    def complete(self, prompts, n, temperature, top_p, max_tokens, seed):
        self.calls.append({"n": n, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                           "seed": seed, "prompts": list(prompts)})
        out = []
        for prompt in prompts:
            p = next(p for p in self.problems if p.prompt in prompt)
            out.append([self.script(p, j) for j in range(n)])
        return out


def graded_script(k):
    """Problem i gets its first c_i = i % (k+1) samples right, the rest one shared wrong answer."""
    def script(p, j):
        c = int(p.meta["_c"]) if "_c" in p.meta else 0
        return f"Adding the digits.</think>\n\\boxed{{{p.answer if j < c else int(p.answer) + 1}}}"
    return script


def test_metrics_match_hand_computation():
    k = 4
    cfg = EvalConfig(task="arithmetic", k=k, limit=10, seed=1)
    problems = load_problems(cfg)
    for i, p in enumerate(problems):
        p.meta["_c"] = i % (k + 1)
    result = run_eval(ScriptedBackend(problems, graded_script(k)), cfg)
    cs = [i % (k + 1) for i in range(10)]
    m = result["metrics"]
    assert m["k"] == k and m["n_problems"] == 10 and m["n_samples"] == 40
    assert m["pass@1"] == pytest.approx(sum(c / k for c in cs) / 10)
    assert m["pass@k"] == pytest.approx(sum(c > 0 for c in cs) / 10)
    # majority: wrong answers all agree; ties go to the first sample, which is a correct one
    assert m["cons@k"] == pytest.approx(sum(c > 0 and c >= k - c for c in cs) / 10)
    assert m["pass@j"]["2"] == pytest.approx(sum(pass_at_k(k, c, 2) for c in cs) / 10)
    assert m["format_rate"] == 1.0 and m["language_consistency_rate"] == 1.0 and m["answer_rate"] == 1.0
    assert m["mean_response_tokens"] == 4 and m["mean_reasoning_tokens"] == 3
    rec = result["problems"][3]
    assert rec["n_correct"] == 3 and rec["cons@k"] and rec["majority_answer"] == problems[3].answer
    assert len(rec["samples"]) == k and rec["samples"][0]["correct"] and not rec["samples"][3]["correct"]


def test_prompts_follow_r1_usage_rules():
    cfg = EvalConfig(task="arithmetic", k=1, limit=2)
    problems = load_problems(cfg)
    b = ScriptedBackend(problems, lambda p, j: "x</think>1")
    prompt = render_prompt(problems[0], cfg, b)
    assert "<|system|>" not in prompt  # no system prompt
    assert MATH_INSTRUCTION in prompt
    assert prompt.endswith("<|assistant|><think>\n")  # generation forced to start in thinking
    # a template whose generation prompt already opens <think> is not given a second one
    b2 = ScriptedBackend(problems, lambda p, j: "x</think>1", gen_prompt="<｜Assistant｜><think>\n")
    assert render_prompt(problems[0], cfg, b2).count("<think>") == 1
    # sorting is not math-like: no \boxed instruction
    srt = EvalConfig(task="sorting", k=1, limit=1)
    assert MATH_INSTRUCTION not in render_prompt(load_problems(srt)[0], srt, b)
    sysp = EvalConfig(task="arithmetic", k=1, limit=1, system_prompt="Be brief.", force_think=False)
    assert render_prompt(problems[0], sysp, b).startswith("<|system|>Be brief.")
    assert not render_prompt(problems[0], sysp, b).endswith("<think>\n")
    z = EvalConfig(task="arithmetic", k=1, limit=1, template="r1_zero")
    assert render_prompt(problems[0], z, b).endswith("Assistant: <think>")


def test_sampling_settings_and_seeds_reach_the_backend_and_runs_repeat():
    cfg = EvalConfig(task="countdown", k=3, limit=5, batch_size=2, seed=11, max_tokens=77)
    problems = load_problems(cfg)
    b = ScriptedBackend(problems, lambda p, j: f"try</think><answer>{p.answer}</answer>")
    r1 = run_eval(b, cfg)
    assert [len(c["prompts"]) for c in b.calls] == [2, 2, 1]
    assert {(c["n"], c["temperature"], c["top_p"], c["max_tokens"]) for c in b.calls} == {(3, 0.6, 0.95, 77)}
    assert len({c["seed"] for c in b.calls}) == 3  # each batch gets its own seed
    r2 = run_eval(ScriptedBackend(problems, b.script), cfg)
    assert r1["problems"] == r2["problems"] and r1["metrics"] == r2["metrics"]
    assert r1["metrics"]["pass@1"] == 1.0


def test_format_language_and_truncation_rates():
    cfg = EvalConfig(task="letters", k=4, limit=3)
    problems = load_problems(cfg)

    def script(p, j):
        return [Generation(f"Counting letters one by one.</think>\n\\boxed{{{p.answer}}}", 9, "stop"),
                Generation("我们来数一数字母</think>\n\\boxed{0}", 5, "stop"),
                Generation("Counting letters one by one and never stopping", 8, "length"),
                "no think at all"][j]
    result = run_eval(ScriptedBackend(problems, script), cfg)
    m = result["metrics"]
    assert m["format_rate"] == pytest.approx(0.5)
    assert m["language_consistency_rate"] == pytest.approx(0.75)
    assert m["answer_rate"] == pytest.approx(0.5)
    assert m["truncation_rate"] == pytest.approx(1 / 3)  # 3 samples reported a finish reason
    assert m["mean_response_tokens_correct"] == 9


def test_backend_returning_the_wrong_number_of_samples_is_an_error():
    cfg = EvalConfig(task="arithmetic", k=2, limit=1)
    problems = load_problems(cfg)

    class Short(ScriptedBackend):
        def complete(self, prompts, n, **kw):
            return [["x</think>1"] for _ in prompts]
    with pytest.raises(RuntimeError, match="k=2"):
        run_eval(Short(problems, None), cfg)


def test_config_validation_is_actionable():
    with pytest.raises(ValueError, match="k must"):
        EvalConfig(task="arithmetic", k=0)
    with pytest.raises(ValueError, match="split"):
        EvalConfig(task="arithmetic", split="dev")
    with pytest.raises(ValueError, match="template"):
        EvalConfig(task="arithmetic", template="llama")
    with pytest.raises(KeyError, match="known tasks"):
        EvalConfig(task="chess")
    with pytest.raises(ValueError, match="JSONL"):
        EvalConfig(task="math")


def test_result_file_markdown_and_plot(tmp_path):
    k = 4
    cfg = EvalConfig(task="arithmetic", k=k, limit=6)
    problems = load_problems(cfg)
    for i, p in enumerate(problems):
        p.meta["_c"] = i % (k + 1)
    result = run_eval(ScriptedBackend(problems, graded_script(k)), cfg, model_name="models/tiny.gguf")
    path = report.write_json(result, tmp_path / "out" / "a.json")
    doc = report.load_result(path)
    assert doc["metrics"]["pass@1"] == result["metrics"]["pass@1"]
    for key in ("pass@1", "cons@k", "pass@k"):
        assert key in doc["metrics"]
    json.dumps(doc)  # plain JSON all the way down
    md = report.markdown_report(doc)
    assert "| tiny.gguf | arithmetic |" in md and "cons@4" in md and "pass@4" in md
    png = report.plot_accuracy_vs_length([doc, doc], tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.json"
    bad.write_text('{"metrics": {"pass@1": 0.5}}')
    with pytest.raises(ValueError, match="cons@k"):
        report.load_result(bad)


def _parser():
    from r1.eval.cli import add_parser

    top = argparse.ArgumentParser(prog="r1")
    add_parser(top.add_subparsers(dest="command"))
    return top


def test_cli_eval_and_compare(tmp_path, monkeypatch, capsys):
    import r1.eval.backend as backend_mod

    class FakeEngine(ScriptedBackend):
        def __init__(self, path, dtype="float32", device="cpu", profile="base"):
            self.path = str(path)
            cfg = EvalConfig(task="arithmetic", k=2, limit=3, seed=5)
            super().__init__(load_problems(cfg), lambda p, j: f"ok</think>\\boxed{{{p.answer if j == 0 else 0}}}")
    monkeypatch.setattr(backend_mod, "EngineBackend", FakeEngine)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    out = tmp_path / "res.json"
    args = _parser().parse_args(["eval", str(model), "--task", "arithmetic", "--k", "2", "--limit", "3", "--seed", "5",
                                 "--output", str(out), "--plot", str(tmp_path / "p.png"), "--quiet"])
    assert args.func(args) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics"]["pass@1"] == 0.5 and doc["metrics"]["cons@k"] == 1.0 and doc["config"]["seed"] == 5
    assert out.with_suffix(".md").read_text().count("| m.gguf |") == 1
    assert (tmp_path / "p.png").exists()
    capsys.readouterr()

    args = _parser().parse_args(["eval", "--compare", str(out), str(out), "--output", str(tmp_path / "cmp.md")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "pass@1" in printed and "0.500" in printed
    assert (tmp_path / "cmp.md").read_text().count("| m.gguf |") == 2

    args = _parser().parse_args(["eval", "--compare", str(tmp_path / "missing.json")])
    assert args.func(args) == 2
    assert "no result file" in capsys.readouterr().err
    # no MODEL: the embedded default (SmolLM2 until models/r1-tiny exists) is what gets loaded
    from r1.commands.common import resolve_model
    seen = []
    monkeypatch.setattr(backend_mod, "EngineBackend", lambda path, **kw: seen.append(path) or (_ for _ in ()).throw(ValueError("stop")))
    args = _parser().parse_args(["eval"])
    assert args.func(args) == 2 and seen == [str(resolve_model(None))]


# ---- JSONL files (GSM8K / MATH-500 / AIME style) --------------------------------------------

def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_gsm8k_and_math500_files_load_and_grade(tmp_path):
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [
        {"question": "Tom has 1,200 apples and buys 34 more. How many?", "answer": "1200 + 34 = 1234\n#### 1,234"},
        {"question": "Half of 1?", "answer": "1/2 = 0.5\n#### 0.5"},
    ])
    cfg = EvalConfig(task=str(gsm), k=2)
    problems = load_problems(cfg)
    assert [p.answer for p in problems] == ["1234", "0.5"] and problems[0].task == "math"
    answers = {problems[0].prompt: ["1,234", "1235"], problems[1].prompt: ["\\frac{1}{2}", "\\frac{1}{2}"]}
    result = run_eval(ScriptedBackend(problems, lambda p, j: f"think</think>\\boxed{{{answers[p.prompt][j]}}}"), cfg)
    assert result["metrics"]["pass@1"] == pytest.approx(0.75)
    assert result["metrics"]["cons@k"] == pytest.approx(1.0)
    assert MATH_INSTRUCTION in result["problems"][0]["prompt"]

    math500 = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "Compute $\\sin 60^\\circ$.", "solution": "... so $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "unique_id": "t/1"},
        {"problem": "AIME-ish", "solution": "long", "answer": 204},
    ])
    ps = load_problems(EvalConfig(task=str(math500), k=1))
    assert ps[0].answer == "\\frac{\\sqrt{3}}{2}" and ps[0].id == "t/1" and ps[1].answer == "204"
    custom = write_jsonl(tmp_path / "c.jsonl", [{"q": "one plus one", "gold": "2"}])
    ps = load_problems(EvalConfig(task=str(custom), k=1, question_field="q", answer_field="gold"))
    assert ps[0].prompt == "one plus one" and ps[0].answer == "2"
    with pytest.raises(KeyError, match="--question-field"):
        load_problems(EvalConfig(task=str(custom), k=1))


def test_bad_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a", "answer": "1"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_problems(EvalConfig(task=str(bad), k=1))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_problems(EvalConfig(task=str(tmp_path / "nope.jsonl"), k=1))


def test_thinking_opened_by_the_template_or_not_at_all():
    # R1's own template opens <think>: completions start inside the reasoning even unforced
    cfg = EvalConfig(task="arithmetic", k=1, limit=3, force_think=False)
    problems = load_problems(cfg)
    b = ScriptedBackend(problems, lambda p, j: f"sum it</think>\\boxed{{{p.answer}}}", gen_prompt="<｜Assistant｜><think>\n")
    m = run_eval(b, cfg)["metrics"]
    assert m["pass@1"] == 1.0 and m["format_rate"] == 1.0
    # a model that does not reason, evaluated without forcing: its whole response is the answer region
    b = ScriptedBackend(problems, lambda p, j: f"The answer is \\boxed{{{p.answer}}}.")
    m = run_eval(b, cfg)["metrics"]
    assert m["pass@1"] == 1.0 and m["format_rate"] == 0.0
    # ...whereas with thinking forced, an answer inside never-closed reasoning does not count
    forced = EvalConfig(task="arithmetic", k=1, limit=3)
    assert run_eval(b, forced)["metrics"]["pass@1"] == 0.0
