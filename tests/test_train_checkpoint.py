"""Checkpoints: atomic layout, safe formats, full state round trip, keep-last, incomplete saves ignored,
and non-finite steps that stop the run without touching the weights or the last good checkpoint."""
from __future__ import annotations

import json
import random

import pytest
import torch

import r1
from r1.config import preset
from r1.model import build_model
from r1.train.checkpoint import MARKER, CheckpointManager
from r1.train.config import OptimConfig
from r1.train.optim import build_optimizer
from train_common import tiny_config, tokenizer_dir  # noqa: F401  (fixture)
from train_common import one_thread  # noqa: F401  (autouse fixture)

SMALL = dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16, kv_lora_rank=16, vocab_size=64)


def _trained(seed: int = 0, train_mtp: bool = True):
    """train_mtp=False: the MTP module gets no gradient (as in GRPO), so its parameters sit in the
    optimizer without state."""
    torch.manual_seed(seed)
    model = build_model(preset("tiny-deepseek", **SMALL))
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    opt, sched = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=1), total_steps=10)
    ids = torch.randint(0, 64, (2, 12))
    for _ in range(2):
        logits, h = model(ids, return_hidden=True)
        loss = logits.logsumexp(-1).mean()
        if train_mtp:
            loss = loss + model.mtp_logits(h, ids)[0].logsumexp(-1).mean()
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    with torch.no_grad():  # a non-zero balancing bias must survive the round trip too
        model.model.layers[1].mlp.gate.e_score_correction_bias.uniform_(-0.1, 0.1)
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained()
    mgr = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    random.seed(123)
    torch.manual_seed(77)
    path = mgr.save(2, model, opt, sched, data_state={"sampler": {"epoch": 1, "pos": 5}}, extra={"note": "x"},
                    model_files={"hello.txt": "hi"}, config_yaml="run: {}\n")
    expect_torch, expect_py = torch.rand(3), random.random()

    files = sorted(p.name for p in path.iterdir())
    assert files == sorted([MARKER, "config.yaml", "model", "optimizer.safetensors", "rng_rank0.json",
                            "rng_rank0.safetensors", "trainer_state.json"])
    # Safe formats only: safetensors, JSON, YAML, text. Nothing a loader would have to unpickle.
    for p in path.rglob("*"):
        if p.is_file():
            assert p.suffix in (".safetensors", ".json", ".yaml", ".txt", "") and p.read_bytes()[:2] != b"\x80\x04"

    fresh, fopt, fsched = _trained(seed=1)
    torch.manual_seed(0)
    random.seed(0)
    state = mgr.restore(mgr.latest(), fresh, fopt, fsched)
    assert state["step"] == 2 and state["data"] == {"sampler": {"epoch": 1, "pos": 5}} and state["extra"] == {"note": "x"}
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n
    sd_a, sd_b = opt.state_dict(), fopt.state_dict()
    for k in sd_a["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sd_a["state"][k][key], sd_b["state"][k][key])
    assert [g["lr"] for g in sd_a["param_groups"]] == [g["lr"] for g in sd_b["param_groups"]]
    assert fsched.state_dict()["last_epoch"] == sched.state_dict()["last_epoch"] == 2
    assert torch.equal(torch.rand(3), expect_torch) and random.random() == expect_py

    # The model folder is a regular HF checkpoint that r1 loads as is.
    loaded = r1.load_model(path / "model")
    assert torch.equal(loaded.model.layers[1].mlp.gate.e_score_correction_bias,
                       model.model.layers[1].mlp.gate.e_score_correction_bias)
    assert (path / "model" / "hello.txt").read_text() == "hi"


def test_parameters_that_never_stepped_resume_without_state(tmp_path):
    """GRPO trains no MTP module: its parameters are in the optimizer but were never stepped, so the
    checkpoint has no state for them. Resuming works (they stay stateless, the rest is restored
    exactly); a checkpoint whose optimizer never held a trained parameter is refused by name."""
    from r1.train.checkpoint import CheckpointError

    model, opt, sched = _trained(train_mtp=False)
    assert any(n.startswith("mtp.") for n, _ in model.named_parameters())
    mgr = CheckpointManager(tmp_path / "checkpoints")
    path = mgr.save(2, model, opt, sched)
    fresh, fopt, fsched = _trained(seed=1, train_mtp=False)
    mgr.restore(path, fresh, fopt, fsched)
    sd_a, sd_b = opt.state_dict(), fopt.state_dict()
    assert sd_a["state"].keys() == sd_b["state"].keys() and len(sd_a["state"]) > 0
    for k in sd_a["state"]:
        assert torch.equal(sd_a["state"][k]["exp_avg"], sd_b["state"][k]["exp_avg"])

    other = build_model(preset("tiny-deepseek", **SMALL))  # same names, but an optimizer that holds MTP's
    oopt, _ = build_optimizer(other, OptimConfig(lr=1e-2, warmup_steps=1), total_steps=10)
    trimmed = CheckpointManager(tmp_path / "trimmed")
    only_backbone = [p for n, p in model.named_parameters() if not n.startswith("mtp.")]
    small_opt = torch.optim.AdamW(only_backbone, lr=1e-2)
    logits = model(torch.randint(0, 64, (1, 8)))
    logits.logsumexp(-1).mean().backward()
    small_opt.step()
    p2 = trimmed.save(1, model, small_opt)
    with pytest.raises(CheckpointError, match="never held"):
        trimmed.load_optimizer(p2, other, oopt)


def test_incomplete_saves_are_ignored_and_old_ones_pruned(tmp_path):
    model, opt, sched = _trained()
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        mgr.save(step, model, opt, sched)
    assert [p.name for p in mgr.complete()] == ["step_00000002", "step_00000003"]
    # What a kill mid-save leaves behind: a temp dir, and (hand-made) a step dir without the marker.
    (tmp_path / ".tmp-step_00000004").mkdir()
    (tmp_path / ".tmp-step_00000004" / "trainer_state.json").write_text("{trunc")
    torn = tmp_path / "step_00000005"
    torn.mkdir()
    (torn / "trainer_state.json").write_text(json.dumps({"step": 5}))
    assert mgr.latest().name == "step_00000003"
    with pytest.raises(Exception, match="not a complete checkpoint"):
        mgr.read_state(torn)
    mgr.remove_incomplete()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]


def _trainer(cfg, tok_dir):
    from r1.train.data import pack_texts
    from r1.train.loop import LoopSpec, Trainer, build_train_model
    from r1.train.pretrain import corpus

    tok = r1.load_tokenizer(tok_dir)
    data = pack_texts(corpus(cfg.data), tok, cfg.data.seq_len)
    model = build_train_model(cfg.model, tok, cfg.run.seed, torch.device("cpu"))
    return Trainer(cfg, model, LoopSpec(data, None, cfg.data.batch_size, cfg.data.grad_accum))


@pytest.mark.parametrize("where", ["gradient", "loss"])
def test_non_finite_step_is_not_applied(tmp_path, tokenizer_dir, where):
    from r1.train.loop import NonFiniteError

    cfg = tiny_config(tmp_path, tokenizer_dir, steps=2, **{"run.save_every": 1})
    trainer = _trainer(cfg, tokenizer_dir)
    trainer.fit()
    ckpts_before = [p.name for p in trainer.ckpts.complete()]
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    w = trainer.model.model.layers[0].mlp.up_proj.weight
    if where == "gradient":
        handle = w.register_hook(lambda g: g * float("inf"))  # finite loss, infinite gradient
    else:
        with torch.no_grad():
            trainer.model.model.embed_tokens.weight[:] = float("nan")
            params["model.embed_tokens.weight"] = trainer.model.model.embed_tokens.weight.detach().clone()
    with pytest.raises(NonFiniteError, match=r"step 3: .*NOT applied.*last good checkpoint is .*step_00000002"):
        trainer.train_step(3)
    if where == "gradient":
        handle.remove()
    for n, p in trainer.model.named_parameters():  # the optimizer never stepped
        assert torch.equal(p.detach(), params[n]) or (p.isnan().all() and params[n].isnan().all()), n
    assert [p.name for p in trainer.ckpts.complete()] == ckpts_before
