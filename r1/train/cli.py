"""`r1 train <trainer> [--config RECIPE.yaml] [--resume] [KEY=VALUE ...]` and `r1 plot RUN_DIR`.

Trainers are registered as data in TRAINERS (name -> module) and imported lazily. A trainer
module provides either
  CONFIG (a dataclass with a `run: RunConfig` field) and train(cfg) -> metrics  [config-driven], or
  add_arguments(parser) and run(args) -> exit code                             [plain command].
Config-driven trainers all get the same flags: --config, --section, --resume, --out,
--max-steps, --print-config, and free KEY=VALUE overrides (dotted: optim.lr=3e-4).
Also runnable as `python -m r1.train.cli train pretrain ...` (and under torchrun).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module. Order is the order in --help.
TRAINERS: dict[str, str] = {
    "tokenizer": "r1.train.tokenizer_train",
    "pretrain": "r1.train.pretrain",
    "sft": "r1.train.sft",
    "grpo": "r1.train.grpo",
}

EPILOG = """examples:
  r1 train pretrain --config recipes/pretrain-tiny.yaml run.out_dir=runs/pt run.max_steps=500
  r1 train pretrain --resume run.out_dir=runs/pt            # continue from the newest complete checkpoint
  torchrun --nproc-per-node 2 -m r1 train pretrain --config recipes/pretrain-tiny.yaml
  r1 train sft model.init_from=runs/pt/model data.files=[data/sft.jsonl]
  r1 train tokenizer corpus.txt --out tok/ --vocab-size 1024
  r1 plot runs/pt"""


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:  # a trainer whose module is not there yet
        if e.name and module.startswith(e.name):
            return None
        raise


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train models: tokenizer, pretrain, sft, grpo",
                              description="Train models with configs from YAML recipes and KEY=VALUE overrides.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="trainer", metavar="TRAINER")
    for name, module in TRAINERS.items():
        mod = _load(module)
        config_driven = mod is not None and hasattr(mod, "CONFIG") and hasattr(mod, "train")
        if mod is None or not (config_driven or (hasattr(mod, "add_arguments") and hasattr(mod, "run"))):
            continue  # not there yet, or not (yet) following the trainer contract above
        sp = sub.add_parser(name, help=getattr(mod, "DESCRIPTION", None) or (mod.__doc__ or "").strip().split("\n")[0],
                            description=(mod.__doc__ or "").strip() or None,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if config_driven:
            _add_config_flags(sp)
            sp.set_defaults(func=_run_config, trainer_module=module)
        else:
            mod.add_arguments(sp)
            sp.set_defaults(func=mod.run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    pp = subparsers.add_parser("plot", help="plot a run's metrics (loss, reward, accuracy, length, KL) to PNGs",
                               description="Draw the curves of RUN_DIR/metrics.jsonl into PNG files.")
    pp.add_argument("run_dir", help="a run folder holding metrics.jsonl")
    pp.add_argument("--out", "-o", default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    pp.add_argument("--smooth", type=int, default=1, help="moving-average window over logged steps")
    pp.set_defaults(func=_run_plot)


def _add_config_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=3e-4")
    sp.add_argument("--config", "-c", default=None, help="YAML recipe")
    sp.add_argument("--section", default=None, help="read this top-level key of the recipe (multi-stage recipes)")
    sp.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in run.out_dir")
    sp.add_argument("--out", default=None, help="run folder (run.out_dir)")
    sp.add_argument("--max-steps", type=int, default=None, help="run.max_steps")
    sp.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def resolve_config(module: str, args: argparse.Namespace):
    from r1.train.config import load_config

    mod = importlib.import_module(module)
    overrides = list(args.overrides)
    if args.resume:
        overrides.append("run.resume=true")
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    if args.max_steps is not None:
        overrides.append(f"run.max_steps={args.max_steps}")
    return mod, load_config(mod.CONFIG, args.config, overrides, section=args.section)


def _run_config(args: argparse.Namespace) -> int:
    import yaml

    from r1.train.config import TrainConfigError, to_dict

    try:
        mod, cfg = resolve_config(args.trainer_module, args)
    except TrainConfigError as e:
        print(f"r1 train {args.trainer}: config error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from r1.train.data import DataError
    from r1.train.loop import NonFiniteError

    try:
        mod.train(cfg)
    except (TrainConfigError, DataError) as e:  # found once the data or model is looked at
        print(f"r1 train {args.trainer}: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"r1 train {args.trainer}: {e}", file=sys.stderr)
        return 1
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    from r1.train.plot import plot_run

    try:
        paths = plot_run(args.run_dir, args.out, smooth=args.smooth)
    except FileNotFoundError as e:
        print(f"r1 plot: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m r1.train.cli train ...` is the `r1` command line itself (one parser, one dispatch)."""
    from r1.cli import main as r1_main

    return r1_main(argv)


if __name__ == "__main__":
    sys.exit(main())
