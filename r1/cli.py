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


def parse(parser: argparse.ArgumentParser, argv: list[str],
          namespace: argparse.Namespace | None = None) -> argparse.Namespace:
    """Parse argv by descending to the innermost subcommand it names and parsing that one's
    arguments intermixed: options may come between positionals (`r1 run MODEL --max-tokens 2 hi`),
    and a mistyped flag gets the subcommand's own usage line, not the top level's."""
    namespace = namespace if namespace is not None else argparse.Namespace()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        try:
            return parser.parse_intermixed_args(argv, namespace)
        except TypeError:  # a parser shape intermixed parsing refuses (argparse.REMAINDER)
            return parser.parse_args(argv, namespace)
    action = subs[0]
    i = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if i is None or i > 0 or argv[i] not in action.choices:
        return parser.parse_args(argv, namespace)  # help, no subcommand, or an unknown one: argparse says so
    setattr(namespace, action.dest, argv[0])
    namespace = parse(action.choices[argv[0]], argv[1:], namespace)
    for key, value in parser._defaults.items():  # the parent's defaults where the child set none
        if not hasattr(namespace, key):
            setattr(namespace, key, value)
    return namespace


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parse(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from r1.errors import debug, one_line

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C outside a reply (loading, training): quit quietly, as a shell tool does
        if debug():
            raise
        print(file=sys.stderr)
        return 130
    except Exception as e:  # one line per failure; R1_DEBUG=1 for the traceback
        if debug():
            raise
        print(f"r1: {one_line(e)}", file=sys.stderr)
        if not isinstance(e, (ValueError, OSError)):  # not bad input: a bug, say how to see more
            print("r1: (set R1_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
