"""`r1 eval` end to end on the real SmolLM2-135M-Instruct GGUF: arithmetic, k=4, report written.

A 135M instruct model is not a reasoner, so the numbers are near zero; what this proves is
that the real model, tokenizer, chat template and engine run through the whole harness and
produce a well-formed result file.
"""
import json

from r1.cli import main


def test_r1_eval_runs_end_to_end_on_smollm2(smollm2_gguf, tmp_path, capsys):
    out = tmp_path / "smollm2-arith.json"
    rc = main(["eval", str(smollm2_gguf), "--task", "arithmetic", "--k", "4", "--limit", "2",
               "--max-tokens", "8", "--seed", "0", "--output", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    m = doc["metrics"]
    assert m["k"] == 4 and m["n_problems"] == 2 and m["n_samples"] == 8
    for key in ("pass@1", "cons@k", "pass@k"):
        assert 0.0 <= m[key] <= 1.0
    assert m["pass@1"] <= m["pass@k"]
    assert 0 < m["mean_response_tokens"] <= 8
    assert m["truncation_rate"] is not None
    rec = doc["problems"][0]
    assert rec["prompt"].endswith("<think>\n") and "\\boxed{}" in rec["prompt"]
    assert all(s["text"] for s in rec["samples"])
    assert len({s["text"] for s in rec["samples"]}) > 1  # k samples, not one repeated
    md = out.with_suffix(".md").read_text()
    assert "pass@1" in md and "cons@4" in md and "SmolLM2-135M-Instruct.Q4_1.gguf" in md
    assert "pass@1" in capsys.readouterr().out
