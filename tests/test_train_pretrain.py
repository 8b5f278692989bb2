"""Pretraining: next-token + MTP loss, expert balancing (bias / aux / none), gradient-accumulation
invariance, the resolved config next to the checkpoints, and a result the engine can run."""
from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file

import r1
from r1.train.config import TrainConfigError, load_config, to_dict
from r1.train.logging import read_metrics
from r1.train.pretrain import PretrainConfig, train
from train_common import tiny_config, tiny_overrides, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)


def test_pretrain_end_to_end(tmp_path):
    # No data.tokenizer: the run trains its own BPE with the R1 tokens on the corpus.
    cfg = load_config(PretrainConfig, None, tiny_overrides(tmp_path, "x", steps=12, **{
        "data.tokenizer": "null", "data.vocab_size": 320, "run.save_every": 5, "run.keep_last": 2,
        "run.eval_every": 6, "data.eval_fraction": 0.1, "run.eval_batches": 2}))
    history = train(cfg)
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == list(range(1, 13)) == [r["step"] for r in history]
    first, last = recs[0], recs[-1]
    assert last["lm_loss"] < first["lm_loss"] - 0.5 and last["mtp_loss"] < first["mtp_loss"] - 0.5
    # total objective = L_main + lambda * L_MTP + alpha * L_bal (one MTP depth)
    assert last["loss"] == pytest.approx(last["lm_loss"] + 0.3 * last["mtp_loss"] + 1e-4 * last["balance_loss"], rel=1e-4)
    assert {"moe_imbalance/layer1", "moe_imbalance/mtp0", "moe_imbalance", "lr", "grad_norm"} <= set(last)
    assert "eval_loss" in recs[5] and "eval_loss" in last and "eval_loss" not in recs[0]
    # Resolved config next to the checkpoints (and in each), last N kept, final model exported.
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == to_dict(cfg)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["step_00000010", "step_00000012"]
    assert yaml.safe_load((tmp_path / "checkpoints" / ckpts[-1] / "config.yaml").read_text()) == to_dict(cfg)

    # Starting over on top of a finished run is refused; resuming it is a no-op that keeps its records.
    with pytest.raises(TrainConfigError, match="already holds checkpoints.*--resume"):
        train(cfg)
    cfg.run.resume = True
    assert train(cfg) == [] and read_metrics(tmp_path) == recs

    from r1.engine.engine import LLM

    model = r1.load_model(tmp_path / "model")
    assert model.config.vocab_size == r1.load_tokenizer(tmp_path / "tokenizer").vocab_size
    llm = LLM(str(tmp_path / "model"))
    out = llm.chat([{"role": "user", "content": "What is 2 + 2?"}])
    assert out.outputs[0].token_ids  # the engine loads model + tokenizer from the run folder and generates


def _final_weights(path):
    return load_file(str(path / "model" / "model.safetensors"))


def test_gradient_accumulation_1x8_equals_8x1(tmp_path, tokenizer_dir):
    a = train(tiny_config(tmp_path / "a", tokenizer_dir, steps=3, **{"data.batch_size": 8, "data.grad_accum": 1}))
    b = train(tiny_config(tmp_path / "b", tokenizer_dir, steps=3, **{"data.batch_size": 1, "data.grad_accum": 8}))
    for ra, rb in zip(a, b):
        for k in ("lm_loss", "mtp_loss", "balance_loss", "grad_norm", "moe_imbalance"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), k
    wa, wb = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert diff < 1e-4, diff  # Adam divides by sqrt(v): fp rounding of summation order shows up at ~1e-5


def test_bias_balancing_lowers_expert_imbalance(tmp_path, tokenizer_dir):
    # gamma 0.01 instead of V3's 0.001: this run has 30 steps, not 14.8T tokens.
    def run(name, **kw):
        h = train(tiny_config(tmp_path / name, tokenizer_dir, steps=30, **{"optim.lr": 1e-2, **kw}))
        return sum(r["moe_imbalance"] for r in h[-10:]) / 10, h

    none, h_none = run("none", **{"loss.balance": "none"})
    bias, h_bias = run("bias", **{"loss.balance": "bias", "loss.bias_update_speed": 0.01})
    assert bias < none, (bias, none)
    w = _final_weights(tmp_path / "bias")
    b = w["model.layers.1.mlp.gate.e_score_correction_bias"]
    # 30 updates of exactly +-gamma each: every bias is a multiple of gamma, and they moved.
    assert b.abs().max() > 0 and torch.allclose(b / 0.01, (b / 0.01).round(), atol=1e-3)
    assert _final_weights(tmp_path / "none")["model.layers.1.mlp.gate.e_score_correction_bias"].abs().max() == 0
    print(f"max/mean expert load, last 10 of 30 steps: none {none:.3f}  bias {bias:.3f}")


def test_classic_aux_loss_option(tmp_path, tokenizer_dir):
    h = train(tiny_config(tmp_path, tokenizer_dir, steps=2, **{"loss.balance": "aux", "loss.aux_alpha": 0.01}))
    r = h[-1]
    assert r["balance_loss"] > 0
    assert r["loss"] == pytest.approx(r["lm_loss"] + 0.3 * r["mtp_loss"] + 0.01 * r["balance_loss"], rel=1e-4)
    w = _final_weights(tmp_path)
    assert w["model.layers.1.mlp.gate.e_score_correction_bias"].abs().max() == 0  # no bias updates with aux


def test_bf16_autocast_and_no_mtp(tmp_path, tokenizer_dir):
    h = train(tiny_config(tmp_path, tokenizer_dir, steps=2, **{"run.dtype": "bfloat16", "loss.mtp_weight": 0}))
    assert "mtp_loss" not in h[-1] and torch.isfinite(torch.tensor(h[-1]["loss"]))
    assert _final_weights(tmp_path)["model.embed_tokens.weight"].dtype == torch.float32  # fp32 master weights
