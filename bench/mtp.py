"""MTP speculative decoding on a trained model: acceptance rate of the MTP head's drafts and the
decode speed-up through the engine, against the same engine without drafting (the peer), in
the same run. Greedy outputs must be token-identical; the script fails if they are not. At batch 1
it also times plain decoding with compiled single-row steps (`compile=True`), which drafting's
eager verify steps have to beat; the turbo profile drafts only where steps are not compiled.

    python bench/mtp.py                          # models/r1-tiny
    python bench/mtp.py --model runs/r1-zero/base/model --template r1_zero --out docs/bench-mtp.md
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def prompts_for(tok, template: str, n: int) -> list[list[int]]:
    from r1.tasks import generate_many, get_task
    from r1.tasks.prompting import r1_zero_prompt, user_message

    probs = generate_many(get_task("arithmetic"), n, seed=0, split="test", difficulty=2)
    if template == "r1_zero":
        return [tok.encode(tok.bos_token + r1_zero_prompt(p), add_special_tokens=False) for p in probs]
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": user_message(p)}],
                                               add_generation_prompt=True), add_special_tokens=False) for p in probs]


def run(model: str, prompts: list[list[int]], batch: int, speculative: bool, max_tokens: int, compile: bool = False):
    from r1.engine.engine import LLM
    from r1.engine.sampling import SamplingParams

    llm = LLM(model, speculative=speculative, max_num_seqs=batch, compile=compile)
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    llm.generate(prompts[:1], params)  # warm-up
    for k in llm.engine.stats:
        llm.engine.stats[k] = 0
    t0 = time.perf_counter()
    outs = []
    for i in range(0, len(prompts), batch):
        outs += llm.generate(prompts[i:i + batch], params)
    dt = time.perf_counter() - t0
    toks = [o.outputs[0].token_ids for o in outs]
    s = llm.engine.stats
    accept = s["spec_accepted"] / s["spec_drafted"] if s["spec_drafted"] else None
    return sum(len(t) for t in toks) / dt, accept, toks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/r1-tiny")
    ap.add_argument("--template", default="chat", choices=["chat", "r1_zero"])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import r1

    tok = r1.load_tokenizer(args.model)
    prompts = prompts_for(tok, args.template, args.prompts)
    rows = []
    for batch in (1, 8):
        base_tps, _, base_toks = run(args.model, prompts, batch, False, args.max_tokens)
        spec_tps, accept, spec_toks = run(args.model, prompts, batch, True, args.max_tokens)
        if base_toks != spec_toks:
            raise SystemExit(f"batch {batch}: greedy outputs differ with MTP drafting — a correctness bug")
        comp_tps = None
        if batch == 1:  # only single-row steps compile
            comp_tps, _, comp_toks = run(args.model, prompts, batch, False, args.max_tokens, compile=True)
            if comp_toks != base_toks:
                raise SystemExit("batch 1: greedy outputs differ with compiled steps — a correctness bug")
        rows.append((batch, base_tps, spec_tps, accept, comp_tps))
        print(f"batch {batch}: plain {base_tps:.1f} tok/s, MTP {spec_tps:.1f} tok/s "
              f"({spec_tps / base_tps:.2f}x), acceptance {accept:.1%}, greedy outputs identical"
              + (f"; plain compiled {comp_tps:.1f} tok/s" if comp_tps else ""))
    lines = [f"# MTP speculative decoding on `{args.model}`", "",
             f"`python bench/mtp.py --model {args.model} --template {args.template} --threads {args.threads}`; "
             f"{args.prompts} held-out arithmetic prompts, greedy, {args.max_tokens} tokens max; "
             f"device: CPU ({platform.machine()}, {args.threads} thread(s)). Peer: the same engine without drafting.",
             "", "| batch | plain tok/s | MTP tok/s | speed-up | acceptance (position 1) | plain compiled tok/s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {b} | {p:.1f} | {s:.1f} | {s / p:.2f}x | {a:.1%} | {f'{c:.1f}' if c else '-'} |"
              for b, p, s, a, c in rows]
    lines += ["", "Greedy outputs are token-identical with and without drafting (checked by the script)."]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
