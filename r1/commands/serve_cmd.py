"""`r1 serve [MODEL]`: the OpenAI/DeepSeek- and Ollama-compatible HTTP server with a web chat page.

    r1 serve                                   # the embedded default model on 127.0.0.1:8000
    r1 serve model.gguf --port 11434 --api-key secret --profile turbo --guard rules
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from r1.commands.common import DTYPES, resolve_model


def serve_cmd(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from r1.engine.engine import EngineConfig
        from r1.serve.app import create_app
        from r1.serve.guard import build_guard
    except ModuleNotFoundError as e:
        raise SystemExit(f"r1 serve: missing dependency {e.name!r}; install the serve extra: pip install 'r1[serve]'")
    if args.dtype not in DTYPES:
        raise SystemExit(f"r1 serve: unknown dtype {args.dtype!r}; choose one of {', '.join(DTYPES)}")
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = resolve_model(args.model)
    keys = list(args.api_key or [])
    if not keys and os.environ.get("R1_API_KEY"):
        keys = [os.environ["R1_API_KEY"]]
    try:
        cfg = EngineConfig(max_num_seqs=args.max_num_seqs, max_waiting=args.max_waiting, kv_cache_gb=args.kv_cache_gb,
                           max_model_len=args.max_model_len, max_num_batched_tokens=args.max_num_batched_tokens,
                           compile=args.compile)
        guard = build_guard(args.guard or [], check_output=args.guard_output)
        if not args.max_body_mb > 0:
            raise ValueError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    except ValueError as e:
        raise SystemExit(f"r1 serve: {e}")
    if args.guard_output and guard is None:
        raise SystemExit("r1 serve: --guard-output needs at least one --guard")
    app = create_app(path, model_name=args.served_model_name, api_keys=keys, profile=args.profile, dtype=args.dtype,
                     engine_config=cfg, guard=guard, log_prompts=args.log_prompts,
                     default_max_tokens=args.default_max_tokens, default_thinking_budget=args.thinking_budget,
                     shutdown_grace_s=args.shutdown_grace, max_body_bytes=int(args.max_body_mb * 2**20))
    if args.host not in ("127.0.0.1", "localhost", "::1") and not keys:
        print(f"r1 serve: warning: listening on {args.host} without --api-key", file=sys.stderr)
    print(f"r1 serve: {path} ({args.profile}) on http://{args.host}:{args.port}  "
          f"(chat page at /, OpenAI API at /v1, Ollama API at /api)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                timeout_graceful_shutdown=args.shutdown_grace)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI/DeepSeek and Ollama compatible HTTP server with a web chat page")
    p.add_argument("model", nargs="?", help="a safetensors folder or .gguf file (default: the embedded model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", action="append", help="accepted bearer key (repeatable; default $R1_API_KEY; none = open)")
    p.add_argument("--profile", default="base", choices=["base", "turbo"],
                   help="turbo: quantized weights (a GGUF keeps its own blocks), compiled decode steps (the first "
                        "request compiles), MTP speculative decoding where it pays")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--served-model-name", help="the model name clients use (default: the file or folder name)")
    p.add_argument("--max-num-seqs", type=int, default=32, help="sequences decoded together")
    p.add_argument("--max-waiting", type=int, default=128,
                   help="waiting-queue bound; requests beyond it get 429 (0 = unbounded)")
    p.add_argument("--max-num-batched-tokens", type=int, default=1024, help="prefill tokens per step")
    p.add_argument("--kv-cache-gb", type=float, default=0.5)
    p.add_argument("--compile", action="store_true",
                   help="compile decode steps (torch.compile): faster decode after tens of seconds of compiling "
                        "on the first requests (turbo always compiles)")
    p.add_argument("--max-model-len", type=int, default=0, help="context length (0 = the model's)")
    p.add_argument("--max-body-mb", type=float, default=4.0,
                   help="request bodies over this many MiB get 413 before they are read (default 4)")
    p.add_argument("--default-max-tokens", type=int, default=None,
                   help="completion budget when a request sets none (default: the rest of the context)")
    p.add_argument("--thinking-budget", type=int, default=None,
                   help="max reasoning tokens for requests that set none; then </think> is forced")
    p.add_argument("--guard", action="append", metavar="SPEC",
                   help="prompt guard: 'rules' (built-in policy), a rules .json/.yaml, or a model path used as a "
                        "Llama-Guard-style classifier (repeatable)")
    p.add_argument("--guard-output", action="store_true", help="also check what the model writes, reasoning included")
    p.add_argument("--log-prompts", action="store_true", help="log prompt text (off by default: only sizes and timings)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--shutdown-grace", type=float, default=10.0,
                   help="seconds in-flight requests get to finish on shutdown before they are aborted")
    p.set_defaults(func=serve_cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r1")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
