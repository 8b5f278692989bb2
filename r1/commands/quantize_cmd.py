"""`r1 quantize IN OUT --scheme int4|int8|fp8 [--group-size 32]`: write a weight-quantized checkpoint.

IN is a safetensors folder, a DeepSeek FP8 release or a .gguf file. A GGUF file's 4-bit blocks (Q4_0/Q4_1/
Q4_K) are carried over exactly when the target is int4 with group 32 (they are group-32 int4 already) and
--dtype is float32 (other dtypes round their scales); other layers, and every other scheme or group size,
are quantized from the float weights. OUT is a folder (config.json with a
quantization_config, safetensors, the tokenizer files), written atomically; load it with
`r1.engine.quant_io.load_quantized`. For int4 and int8 the token embedding is stored as int8 in groups of
32, as llama.cpp's 4-bit files keep it (Q8_0), and int4 scales that are float16 in the source stay float16:
an int4 copy of a 4-bit GGUF file is no larger than the file. FP8 output is DeepSeek's release layout, which `r1.load_model` reads too.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from r1.commands.common import parse_dtype


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def quantize_cmd(args: argparse.Namespace) -> int:
    import r1
    from r1.engine.quant import DEFAULT_SKIP, SCHEMES, quant_modules, quantize_model
    from r1.engine.quant_io import read_quantization_config, save_quantized, tokenizer_files
    from r1.engine.quant_linear import int4_fits

    src, out = Path(args.input).expanduser(), Path(args.output).expanduser()
    if not src.exists():
        raise SystemExit(f"r1 quantize: input {src} not found (give a safetensors folder or a .gguf file)")
    if args.scheme not in SCHEMES:  # argparse checks choices; this guards programmatic callers
        raise SystemExit(f"r1 quantize: unknown scheme {args.scheme!r}; choose one of {', '.join(SCHEMES)}")
    if out.resolve() == src.resolve():
        raise SystemExit("r1 quantize: OUT must differ from IN")
    if out.exists() and not args.force:
        raise SystemExit(f"r1 quantize: {out} already exists; pass --force to replace it")
    if args.scheme == "int4" and (why := int4_fits(16, args.group_size, args.group_size)):
        raise SystemExit(f"r1 quantize: --group-size: {why}")  # before a possibly long load
    qc = read_quantization_config(src)
    if qc is not None and qc.get("quant_method") != "fp8":  # DeepSeek's FP8 release loads as float: fine
        raise SystemExit(f"r1 quantize: {src} is already quantized (quant_method={qc.get('quant_method')!r}); "
                         "start from a float checkpoint, a DeepSeek FP8 release or a .gguf file")
    dtype = parse_dtype(args.dtype)
    native = src.is_file() and src.suffix == ".gguf" and args.scheme == "int4" and args.group_size == 32
    try:
        if native:
            from r1.engine.quant_gguf import load_quantized_gguf

            model = load_quantized_gguf(src, dtype=dtype, lm_head=args.lm_head)
        else:
            model = r1.load_model(src, dtype=dtype)
        summary = quantize_model(model, args.scheme, group_size=args.group_size,
                                 skip=tuple(DEFAULT_SKIP) + tuple(args.skip or ()), lm_head=args.lm_head)
    except ValueError as e:  # bad group size, malformed weights, checkpoint errors: one clear line
        raise SystemExit(f"r1 quantize: {e}")
    files = tokenizer_files(src)
    embedding = args.scheme in ("int4", "int8") and not args.keep_embedding_float
    try:
        save_quantized(model, out, extra_files=files, embedding=embedding)
    except ValueError as e:  # an embedding float16 cannot scale: say so, suggest the flag
        raise SystemExit(f"r1 quantize: {e} (pass --keep-embedding-float)")
    counts = Counter(m.scheme for m in quant_modules(model).values())
    carried = "" if not native else (" (the GGUF file's 4-bit blocks carried over exactly)" if dtype == torch.float32
                                     else f" (the GGUF file's 4-bit codes carried over; scales rounded to {args.dtype})")
    print(f"{src} -> {out}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) +
          f" linear layers quantized, {len(summary.kept)} kept float{carried}")
    if args.verbose:
        for name, why in sorted(summary.kept.items()):
            print(f"  kept float: {name}: {why}")
    if embedding:
        print("token embedding stored as int8 in groups of 32 (as llama.cpp's Q8_0); --keep-embedding-float keeps it float")
    print(f"size: {_size(src) / 2**20:.1f} MiB -> {_size(out) / 2**20:.1f} MiB; tokenizer files: "
          f"{', '.join(sorted(files)) or 'none found'}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("quantize", help="write a weight-quantized checkpoint (int4, int8, FP8 block)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="a safetensors model folder or a .gguf file")
    p.add_argument("output", metavar="OUT", help="the folder to write")
    p.add_argument("--scheme", required=True, choices=("int4", "int8", "fp8"),
                   help="int4: group-wise asymmetric; int8: per output channel; fp8: 128x128 blocks (DeepSeek's)")
    p.add_argument("--group-size", type=int, default=32, help="int4 group size: 32, 64, 128 or 256 (default 32)")
    p.add_argument("--lm-head", action="store_true", help="quantize the output head too (default: keep it float)")
    p.add_argument("--skip", action="append", metavar="PATTERN",
                   help="keep layers matching this fnmatch pattern float (repeatable), e.g. '*.down_proj'")
    p.add_argument("--dtype", default="float32", help="dtype of the float parts: float32 | bfloat16 | float16")
    p.add_argument("--keep-embedding-float", action="store_true",
                   help="store the token embedding as float (default for int4/int8: int8 in groups of 32, as Q8_0)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("-v", "--verbose", action="store_true", help="list the layers kept float and why")
    p.set_defaults(func=quantize_cmd)
