"""`r1 info PRESET_OR_PATH`: parameter counts (total / activated per token / MTP) and KV-cache size."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from r1.config import PRESETS, ModelConfig, count_params, preset
from r1.errors import bad_file


def load_config(arg: str | None) -> ModelConfig:
    if arg is None:  # as every other command: the embedded default
        from r1.commands.common import resolve_model

        arg = str(resolve_model(None))
    if arg in PRESETS:
        return preset(arg)
    p = Path(arg)
    if p.exists():
        with bad_file(p):
            if p.suffix == ".gguf":
                from r1.formats.gguf_io import config_from_gguf

                return config_from_gguf(p)
            return ModelConfig.load(p)
    raise SystemExit(f"r1 info: {arg!r} is neither a preset ({', '.join(PRESETS)}) nor an existing path")


def _b(n: float) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e8 else f"{n / 1e6:,.2f}M"


def run(args: argparse.Namespace) -> int:
    if args.runtime:
        from r1.engine.runtime import runtime_report

        t = Table(title="r1 on this machine", show_header=True)
        t.add_column("part")
        t.add_column("what runs")
        for k, v in runtime_report().items():
            t.add_row(k, v)
        Console().print(t)
        if args.model is None:
            return 0
    cfg = load_config(args.model)
    r = count_params(cfg)
    t = Table(title=f"{args.model or 'the embedded model'} ({cfg.arch})", show_header=True)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("total parameters (incl. embedding + head)", _b(r.total))
    t.add_row("total parameters (excl. embedding + head)", _b(r.total - r.embedding))
    t.add_row("activated per token (incl. embedding + head)", _b(r.activated))
    t.add_row("activated per token (excl. embedding + head)", _b(r.activated - r.embedding))
    if r.mtp_unique:
        t.add_row("MTP modules (unique; share embedding + head)", _b(r.mtp_unique))
        t.add_row("MTP activated per token", _b(r.mtp_activated))
    attn = "MLA latent + roped key" if cfg.is_deepseek else "GQA K/V"
    t.add_row(f"KV cache per token per layer ({attn})", f"{r.kv_elems_per_token_layer:,} elements")
    t.add_row("full multi-head K/V per token per layer", f"{r.kv_elems_naive_per_token_layer:,} elements")
    t.add_row("KV compression vs full multi-head", f"{r.kv_ratio:.1f}x")
    t.add_row("KV cache per token, all layers, bf16", f"{r.kv_bytes_per_token(2) / 1024:,.1f} KiB")
    Console().print(t)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="parameter counts and KV-cache size of a preset or checkpoint")
    p.add_argument("model", nargs="?", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint path "
                                            "(default: the embedded model)")
    p.add_argument("--runtime", action="store_true",
                   help="the CPU, torch's dispatch level and the kernel path r1 uses for each part")
    p.set_defaults(func=run)
