"""`r1 eval MODEL --task NAME ...` and `r1 eval --compare a.json b.json`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  r1 eval model.gguf --task arithmetic --k 16 --limit 50 --output results/arith.json
  r1 eval model.gguf --task countdown --difficulty 3 --split test --plot results/cd.png
  r1 eval model.gguf --task data/math500.jsonl --k 4 --max-tokens 4096
  r1 eval --compare results/a.json results/b.json --plot results/ab.png

metrics: pass@1 is the mean correctness of the k samples per problem (R1's protocol),
cons@k the majority vote over extracted answers, pass@k the unbiased estimator."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from r1.tasks import GENERATED

    p = subparsers.add_parser("eval", help="evaluate a model on reasoning tasks (pass@1 over k, cons@k, pass@k)",
                              description="Evaluate a model on verifiable reasoning tasks with R1's protocol.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="safetensors folder or .gguf file")
    p.add_argument("--task", default="arithmetic", help=f"{', '.join(GENERATED)}, or a JSONL file (default: arithmetic)")
    p.add_argument("--k", type=int, default=16, help="samples per problem (default 16)")
    p.add_argument("--limit", type=int, default=None, help="number of problems (default 100 generated, or the whole file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--difficulty", type=int, default=1, help="1 (easiest) .. 5; above the training range is the held-out harder split")
    p.add_argument("--temperature", type=float, default=0.6, help="R1 evaluates at 0.6")
    p.add_argument("--top-p", type=float, default=0.95, help="R1 evaluates at 0.95")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="completion budget per sample (default 1024, capped to what the model's context leaves "
                        "after the longest prompt; the report says when it was)")
    p.add_argument("--template", default="chat", choices=["chat", "r1_zero"],
                   help="chat: the model's chat template (R1 format); r1_zero: the R1-Zero <think>/<answer> template")
    p.add_argument("--no-force-think", dest="force_think", action="store_false",
                   help="do not end the prompt in <think> (R1 recommends forcing it)")
    p.add_argument("--system", default=None, help="system prompt (R1 recommends none)")
    p.add_argument("--batch-size", type=int, default=8, help="problems per generation call")
    p.add_argument("--language", default="en", help="target language for the consistency metric")
    p.add_argument("--question-field", default=None, help="JSONL question field (auto: question/problem/prompt)")
    p.add_argument("--answer-field", default=None, help="JSONL answer field (auto: answer/final_answer/solution)")
    p.add_argument("--dtype", default="float32", help="model dtype (float32, bfloat16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--profile", default="base", choices=["base", "turbo"], help="inference profile (see r1 run)")
    p.add_argument("--output", "-o", default=None, help="write the JSON result here (and a .md table next to it)")
    p.add_argument("--plot", default=None, help="write a plot of accuracy vs response length (PNG)")
    p.add_argument("--compare", nargs="+", metavar="RESULT.json", help="print result files side by side and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from r1.eval import report

    try:
        if args.compare:
            docs = [report.load_result(path) for path in args.compare]
            report.print_table(docs)
            if args.output:
                Path(args.output).write_text(report.markdown_table(docs), encoding="utf-8")
            if args.plot:
                print(f"plot: {report.plot_accuracy_vs_length(docs, args.plot)}")
            return 0
        if not args.model:  # the embedded default model (or SmolLM2 until there is one)
            from r1.commands.common import resolve_model

            args.model = str(resolve_model(None))
        return _evaluate(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"r1 eval: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2


def _evaluate(args: argparse.Namespace) -> int:
    from r1.eval import report
    from r1.eval.backend import EngineBackend
    from r1.eval.runner import EvalConfig, run_eval

    cfg = EvalConfig(task=args.task, k=args.k, limit=args.limit, seed=args.seed, split=args.split,
                     difficulty=args.difficulty, temperature=args.temperature, top_p=args.top_p,
                     max_tokens=args.max_tokens, template=args.template, force_think=args.force_think,
                     system_prompt=args.system, batch_size=args.batch_size, language=args.language,
                     question_field=args.question_field, answer_field=args.answer_field)
    if cfg.temperature == 0 and cfg.k > 1:
        print("r1 eval: note: temperature 0 makes all k samples identical; R1 uses 0.6", file=sys.stderr)
    backend = EngineBackend(args.model, dtype=args.dtype, device=args.device, profile=getattr(args, "profile", "base"))
    result = run_eval(backend, cfg, model_name=str(args.model), progress=not args.quiet)
    report.print_table([result])
    if result.get("max_tokens_note"):
        print(f"note: {result['max_tokens_note']}")
    if args.output:
        path = report.write_json(result, args.output)
        md = path.with_suffix(".md")
        md.write_text(report.markdown_report(result), encoding="utf-8")
        print(f"wrote {path} and {md}")
    if args.plot:
        print(f"plot: {report.plot_accuracy_vs_length([result], args.plot)}")
    return 0
