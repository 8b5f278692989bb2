"""`r1 pipeline`: the shipped recipes (r1-zero, r1, distill), shrunk to a few steps each, run end
to end — stages chained through "@stage" / "@recipe:stage" references, each model evaluated on
the held-out suite — then resume (every stage skipped), and the report is generated from the
records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from r1.train.config import TrainConfigError
from r1.train.pipeline import load_recipe, run_recipe
from r1.train.pipeline_data import generated_records

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
TINY_DS = {"hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16, "num_hidden_layers": 2,
           "num_attention_heads": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8,
           "v_head_dim": 8, "n_routed_experts": 4, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1,
           "first_k_dense_replace": 1}
TINY_DENSE = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 1}


def shrink(recipe: dict, out_root: Path) -> dict:
    """The same stages and references, a few steps each on tiny models."""
    r = dict(recipe, out_dir=str(out_root / recipe["name"]))
    r["eval"] = dict(r["eval"], limit=2, k=2, max_tokens=8)
    for st in r["stages"]:
        c = st["config"]
        if st["kind"] in ("pretrain", "sft", "grpo"):
            c.setdefault("run", {}).update(max_steps=2, save_every=1)
        if st["kind"] == "pretrain":
            tiny = TINY_DS if c["model"]["preset"] == "tiny-deepseek" else TINY_DENSE
            c["model"]["overrides"] = dict(tiny, max_position_embeddings=512)
            c["data"].update(n_per_task=12, seq_len=64, batch_size=4, vocab_size=300)
        elif st["kind"] == "sft":
            c["data"].update(batch_size=4)
            # a random tiny teacher gets nothing right, so rejection sampling keeps no traces;
            # a few generated solutions keep the student's SFT stage fed
            c["data"]["files"] = [*c["data"]["files"], str(out_root / "generated.jsonl")]
        elif st["kind"] == "grpo":
            c["data"].update(num_prompts=4)
            c["grpo"].update(num_generations=2, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                             max_completion_length=8)
        elif st["kind"] == "rejection":
            c.update(n_per_task=3, samples=2, max_tokens=8)
        elif st["kind"] == "eval":
            c.update(limit=2, k=2, max_tokens=8)
        elif st["kind"] == "export":
            c["to"] = str(out_root / "models" / c["name"])
        elif st["kind"] == "mix":
            for s in c["sources"]:
                if "generated" in s:
                    s["generated"]["n_per_task"] = 5
                if "chitchat" in s:
                    s["chitchat"] = 4
                if "conversations" in s:
                    s["conversations"]["n"] = 4
    return r


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "runs").mkdir()
    recs = generated_records(["arithmetic"], 6, difficulties=[1])
    (root / "runs" / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    for name in ("r1-zero", "r1", "distill"):
        data = shrink(yaml.safe_load((RECIPES / f"{name}.yaml").read_text()), root / "runs")
        (root / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def test_recipes_run_end_to_end_and_resume(shrunk, capsys):
    rec = run_recipe(load_recipe(shrunk / "distill.yaml"))  # requires r1, which requires r1-zero
    runs = shrunk / "runs"
    for name in ("r1-zero", "r1", "distill"):
        pipe = json.loads((runs / name / "pipeline.json").read_text())
        assert all(s["status"] == "done" for s in pipe["stages"]), name
    zero = json.loads((runs / "r1-zero" / "zero" / "stage.json").read_text())
    assert zero["config"]["model"]["init_from"] == str(runs / "r1-zero" / "base" / "model")
    ev = json.loads((runs / "r1-zero" / "zero" / "eval.json").read_text())
    assert set(ev["sets"]) == {"arithmetic/d1", "arithmetic/d2"} and ev["suite"]["template"] == "r1_zero"
    assert {"pass@1", "cons@k", "format_rate", "reasoning_rate", "accuracy_reasoned"} <= set(ev["all"])
    # the student is at most a quarter of the teacher
    import r1

    from r1.config import count_params
    teacher = count_params(r1.load_model(runs / "r1" / "final_rl" / "model").config).total
    student = count_params(r1.load_model(runs / "distill" / "student_sft" / "model").config).total
    assert student <= teacher / 4
    card = (runs / "models" / "r1-tiny" / "README.md").read_text()
    assert "r1 pipeline" in card and "| final_rl |" in card
    assert (runs / "models" / "r1-tiny" / "model.safetensors").is_file()
    report = json.loads((runs / "r1" / "rejection" / "report.json").read_text())
    assert report["totals"]["samples"] == 2 * 3 * 2 and set(report["per_task"]) == {"arithmetic", "mixed_arithmetic"}
    check = json.loads((runs / "r1" / "chat_check" / "eval.json").read_text())
    assert set(check["sets"]) == {"mixed_arithmetic/d1/phrased/3turn", "chitchat/d1/3turn",
                                  "mixed_arithmetic/d1/phrased/nothink"}
    assert [s["name"] for s in rec["stages"]] == [s.name for s in load_recipe(shrunk / "distill.yaml").stages]

    # run again: every stage is done under the same config, so nothing trains
    capsys.readouterr()
    run_recipe(load_recipe(shrunk / "distill.yaml"))
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == sum(len(load_recipe(shrunk / f"{n}.yaml").stages)
                                                    for n in ("r1-zero", "r1", "distill"))

    # a stage produced again makes the stages that read it run again
    capsys.readouterr()
    run_recipe(load_recipe(shrunk / "r1.yaml"), force=["sft_data"])
    out = capsys.readouterr().out
    assert "r1/sft: its config or an input stage changed" in out and "r1/reasoning_rl: done before" in out

    # a stage cut off under another config starts over instead of resuming that run's checkpoints
    state_file = runs / "r1" / "final_rl" / "stage.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "status": "running", "config_hash": "another"}))
    capsys.readouterr()
    run_recipe(load_recipe(shrunk / "r1.yaml"))
    assert "r1/final_rl: its config or an input stage changed" in capsys.readouterr().out
    assert json.loads(state_file.read_text())["status"] == "done"

    from r1.train.results import write_report

    md = write_report(runs, shrunk / "docs").read_text()
    assert "## r1-zero" in md and "## distill" in md and "| claim | holds | numbers |" in md
    assert "R1-Zero: held-out pass@1 rises" in md and (shrunk / "docs" / "results" / "r1-zero-zero.png").is_file()
    # the shrunk models are random: the chat claims are reported, and they fail
    assert "| Chat: every off-domain turn (greeting, thanks, out of scope) is answered in words (chitchat/d1/3turn) | NO |" in md
    assert "Chat: >= 90% of arithmetic turns right, greedy (mixed_arithmetic/d1/phrased/3turn) | NO |" in md
    assert "mixed_arithmetic d1 (people's phrasing, turn 3 of a chat)" in md


def test_bad_references_and_kinds_are_named(tmp_path):
    bad = {"name": "x", "out_dir": str(tmp_path / "x"), "stages": [
        {"name": "a", "kind": "sft", "config": {"model": {"init_from": "@nope"}}}]}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(TrainConfigError, match="unknown stage 'nope'"):
        run_recipe(load_recipe(tmp_path / "x.yaml"))
    bad["stages"][0]["kind"] = "distil"
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(TrainConfigError, match="kind='distil'"):
        load_recipe(tmp_path / "x.yaml")
    bad["stages"][0] = {"name": "a", "kind": "eval", "config": {"model": "@other:b"}}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(TrainConfigError, match="not in this recipe's `requires`"):
        run_recipe(load_recipe(tmp_path / "x.yaml"))


def test_code_recipe_runs_with_the_sandboxed_reward(tmp_path):
    """recipes/code.yaml shrunk: the GRPO stage is rewarded by running completions in the sandbox,
    and the stage evaluations grade code the same way."""
    data = shrink(yaml.safe_load((RECIPES / "code.yaml").read_text()), tmp_path / "runs")
    data["stages"][0]["config"]["model"]["overrides"]["max_position_embeddings"] = 1024  # long code prompts
    (tmp_path / "code.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run_recipe(load_recipe(tmp_path / "code.yaml"))
    runs = tmp_path / "runs" / "code"
    metrics = [json.loads(line) for line in (runs / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert "rewards/code_binary_reward/mean" in metrics[-1]
    ev = json.loads((runs / "rl" / "eval.json").read_text())
    assert set(ev["sets"]) == {"code/d1"} and 0 <= ev["all"]["pass@1"] <= 1


def test_a_report_keeps_the_measured_sections_of_recipes_not_rerun():
    """Rerunning only some recipes must not drop the others' results: their sections and claim rows are
    carried over from the previous report, marked as such (and carried once, however often it is made)."""
    from r1.train.results import CARRIED, carry_over

    old = ("# Results\n\n## r1\n\nold r1\n\n## code\n\nRecipe `recipes/code.yaml`.\n\n| a |\n\n## Claims\n\n"
           "| claim | holds | numbers |\n|---|---|---|\n| R1: old | yes | 1 |\n| Code: runs | yes | 0.57 |\n")
    new = "# Results\n\n## r1\n\nnew r1\n\n## Claims\n\n| claim | holds | numbers |\n|---|---|---|\n| R1: new | yes | 2 |\n"
    out = carry_over(new, old, {"r1"})
    assert "new r1" in out and "old r1" not in out and "| R1: old" not in out
    assert f"## code\n\n{CARRIED}\n\nRecipe `recipes/code.yaml`." in out
    assert out.endswith("| R1: new | yes | 2 |\n| Code: runs | yes | 0.57 (carried over) |\n")
    assert carry_over(new, out, {"r1"}) == out
    assert carry_over(new, old, {"r1", "code"}) == new  # rerun: nothing carried
