"""The `r1` command line: one entry point, subcommands registered as data.

Each subcommand lives next to the code it drives and exposes `add_parser(subparsers)`,
which registers its parser and sets `func` to a callable taking the parsed args and
returning an exit code. Modules are imported lazily so `r1 --help` stays fast and a
missing optional dependency only affects its own subcommand.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> module that defines add_parser(subparsers). Order is the order in --help.
COMMANDS: dict[str, str] = {
    "run": "r1.commands.generate_cmd",
    "chat": "r1.commands.generate_cmd",
    "info": "r1.commands.info_cmd",
    "quantize": "r1.commands.quantize_cmd",
    "serve": "r1.commands.serve_cmd",
    "train": "r1.train.cli",
    "plot": "r1.train.cli",
    "pipeline": "r1.train.pipeline",
    "eval": "r1.eval.cli",
    "sandbox": "r1.sandbox.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or just `only` (so `r1 sandbox ...` does not import torch)."""
    parser = argparse.ArgumentParser(prog="r1", description="DeepSeek-R1, runnable: models, training recipe, inference and serving.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for name, module in COMMANDS.items():
        if module in seen or (only is not None and name != only):
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:  # a subcommand whose module is not there yet
            if e.name and module.startswith(e.name):
                continue
            raise
        mod.add_parser(sub)
        seen.add(module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
