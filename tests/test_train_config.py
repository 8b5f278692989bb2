"""Train configs: YAML recipes + KEY=VALUE overrides -> checked dataclasses; the resolved config round-trips."""
from __future__ import annotations

import pytest
import yaml

from r1.train.config import (TrainConfigError, load_config, parse_overrides, save_config, to_dict)
from r1.train.pretrain import PretrainConfig
from r1.train.sft import SFTConfig
from train_common import cli
from train_common import one_thread  # noqa: F401  (autouse fixture)


def test_yaml_then_overrides_with_types(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "run": {"out_dir": "runs/x", "max_steps": 10},
        "optim": {"lr": "1e-3"},  # YAML 1.1 reads this as a string; the field is a float
        "model": {"preset": "tiny-deepseek", "overrides": {"hidden_size": 32}},
        "loss": {"balance": "aux"},
    }))
    cfg = load_config(PretrainConfig, recipe, ["run.max_steps=20", "optim.lr=3e-4", "run.resume=true",
                                               "data.tasks=[arithmetic,letters]", "model.overrides={n_routed_experts: 4}",
                                               "fp8.enabled=yes"])
    assert cfg.run.max_steps == 20 and cfg.run.out_dir == "runs/x" and cfg.run.resume is True
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.data.tasks == ["arithmetic", "letters"]
    assert cfg.model.overrides == {"hidden_size": 32, "n_routed_experts": 4}  # dict fields merge key by key
    assert cfg.loss.balance == "aux" and cfg.fp8.enabled is True


def test_unknown_keys_and_bad_values_are_actionable(tmp_path):
    with pytest.raises(TrainConfigError, match=r"unknown config key optim\.'lrr'.*valid keys here: lr"):
        load_config(PretrainConfig, None, ["optim.lrr=1"])
    with pytest.raises(TrainConfigError, match="run.max_steps: expected an integer"):
        load_config(PretrainConfig, None, ["run.max_steps=ten"])
    with pytest.raises(TrainConfigError, match="schedule='sideways'"):
        load_config(PretrainConfig, None, ["optim.schedule=sideways"])
    with pytest.raises(TrainConfigError, match="loss.balance"):
        load_config(PretrainConfig, None, ["loss.balance=magic"])
    with pytest.raises(TrainConfigError, match="not KEY=VALUE"):
        parse_overrides(["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(TrainConfigError, match="top level must be a mapping"):
        load_config(PretrainConfig, bad)
    with pytest.raises(TrainConfigError, match="no such config file"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(SFTConfig, None, ["optim.lr=5e-5", "data.files=[a.jsonl]", "fp8.skip=[lm_head,gate]"])
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(SFTConfig, path)
    assert to_dict(again) == to_dict(cfg)
    assert again.fp8.skip == ("lm_head", "gate")


def test_sections_for_multi_stage_recipes(tmp_path):
    recipe = tmp_path / "pipe.yaml"
    recipe.write_text(yaml.safe_dump({"pretrain": {"run": {"max_steps": 7}}, "sft": {"run": {"max_steps": 3}}}))
    assert load_config(SFTConfig, recipe, section="sft").run.max_steps == 3
    with pytest.raises(TrainConfigError, match="no section 'grpo'"):
        load_config(SFTConfig, recipe, section="grpo")


def test_cli_print_config_and_config_error(tmp_path, capsys):
    rc, out, err = cli(["train", "pretrain", "--print-config", "--max-steps", "42", "--out", str(tmp_path), "optim.lr=0.01"], capsys)
    assert rc == 0, err
    d = yaml.safe_load(out)
    assert d["run"]["max_steps"] == 42 and d["run"]["out_dir"] == str(tmp_path) and d["optim"]["lr"] == 0.01
    rc, out, err = cli(["train", "pretrain", "--print-config", "optim.nope=1"], capsys)
    assert rc == 2 and "unknown config key optim.'nope'" in err


def test_a_partial_section_layers_on_the_fields_own_defaults():
    """`optim.lr=1e-5` on `r1 train grpo` changes the learning rate and keeps GRPO's optimizer (TRL's:
    constant, no warmup, no weight decay, beta2 0.999), not OptimConfig's pretraining defaults; a
    partial `run` section keeps GRPO's out_dir."""
    from r1.train.config import load_config
    from r1.train.grpo_config import GRPOTrainConfig

    base = load_config(GRPOTrainConfig)
    got = load_config(GRPOTrainConfig, overrides=["optim.lr=1e-5", "run.max_steps=3"])
    assert got.optim.lr == 1e-5
    assert (got.optim.schedule, got.optim.warmup_steps, got.optim.weight_decay, got.optim.beta2) == \
        (base.optim.schedule, base.optim.warmup_steps, base.optim.weight_decay, base.optim.beta2) == \
        ("constant", 0, 0.0, 0.999)
    assert got.run.out_dir == base.run.out_dir == "runs/grpo" and got.run.max_steps == 3
