"""SFT: chat JSONL (or generated task records) -> assistant-only loss, length-bucketed batches, gradient
accumulation invariant despite variable lengths, and a fine-tuned model the engine runs."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import r1
from r1.config import preset
from r1.model import build_model
from r1.train.config import load_config
from r1.train.sft import SFTConfig, train
from r1.train.tokenizer_train import tokenizer_files
from train_common import cli, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tokenizer_dir):
    tok = r1.load_tokenizer(tokenizer_dir)
    model = build_model(preset("tiny-deepseek", hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                               kv_lora_rank=16, vocab_size=tok.vocab_size, bos_token_id=0, eos_token_id=1))
    model.init_weights(generator=torch.Generator().manual_seed(0))
    folder = tmp_path_factory.mktemp("base") / "model"
    r1.save_model(model, folder, extra_files=tokenizer_files(tok))
    return folder


def _overrides(out, base, steps, **kw):
    d = {"run.out_dir": str(out), "run.max_steps": steps, "run.save_every": 0, "run.progress": False,
         "run.deterministic": True, "model.init_from": str(base), "data.n_per_task": 48, "data.batch_size": 4,
         "data.eval_fraction": 0.0, "optim.lr": 3e-3, "optim.warmup_steps": 1}
    d.update(kw)
    return [f"{k}={v}" for k, v in d.items()]


def test_sft_on_task_records_learns_the_assistant_turns(tmp_path, base_model):
    h = train(load_config(SFTConfig, None, _overrides(tmp_path, base_model, 12)))
    assert h[-1]["lm_loss"] < h[0]["lm_loss"] - 0.5
    # The loss counts assistant tokens only: fewer targets than tokens in the batch.
    tok = r1.load_tokenizer(base_model)
    from r1.train.sft import SFTDataConfig, build_dataset

    ds, _ = build_dataset(SFTDataConfig(n_per_task=48), tok)
    total_targets = sum(sum(m[1:]) for _, m in ds.examples)
    total_tokens = sum(len(ids) - 1 for ids, _ in ds.examples)
    assert total_targets < 0.8 * total_tokens
    assert all(r["tokens"] <= 4 * max(sum(m) for _, m in ds.examples) for r in h)
    # The fine-tuned folder carries the base model's tokenizer files and runs in the engine.
    from r1.engine.engine import LLM

    assert (tmp_path / "model" / "tokenizer.json").read_text() == (base_model / "tokenizer.json").read_text()
    out = LLM(str(tmp_path / "model")).chat([{"role": "user", "content": "What is 3 + 4?"}])
    assert out.outputs[0].token_ids


def test_sft_accumulation_invariance_with_variable_lengths(tmp_path, base_model):
    a = train(load_config(SFTConfig, None, _overrides(tmp_path / "a", base_model, 3, **{
        "data.batch_size": 4, "data.grad_accum": 1})))
    b = train(load_config(SFTConfig, None, _overrides(tmp_path / "b", base_model, 3, **{
        "data.batch_size": 1, "data.grad_accum": 4})))
    for ra, rb in zip(a, b):
        assert ra["tokens"] == rb["tokens"]
        assert ra["lm_loss"] == pytest.approx(rb["lm_loss"], rel=1e-5)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)
    wa = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "model" / "model.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


def test_sft_cli_on_messages_jsonl(tmp_path, base_model, capsys):
    data = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": f"<think>\n{i} + {i} = {2 * i}\n</think>\n\n{2 * i}"}]}
            for i in range(24)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    rc, out, err = cli(["train", "sft", "--out", str(tmp_path / "run"), "--max-steps", "3",
                 f"model.init_from={base_model}", f"data.files=[{data}]", "data.batch_size=4", "run.progress=false"], capsys)
    assert rc == 0, err[-3000:]
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [1, 2, 3]
    rc, out, err = cli(["train", "sft", "--out", str(tmp_path / "bad"), "data.tasks=[arithmetic]"], capsys)
    assert rc == 2 and "needs a tokenizer" in err
