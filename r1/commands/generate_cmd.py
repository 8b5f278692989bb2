"""`r1 run [MODEL] PROMPT` and `r1 chat [MODEL]`: generation from the terminal.

Reasoning (what the model writes inside <think>...</think>) is kept apart from the answer:
`run` prints only the answer unless --show-thinking; `chat` shows the thinking folded into one
line once it is done (`/think` unfolds the last one).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from r1.commands.answer_display import AnswerPrinter
from r1.commands.common import parse_dtype, resolve_model
from r1.engine.engine import ModelOutputError
from r1.engine.respond import respond
from r1.engine.sampling import R1_TEMPERATURE, R1_TOP_P, SamplingParams


def _load(args):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from r1.engine.engine import LLM

    path = resolve_model(args.model)
    # On stderr and transient: a large model takes seconds to place, and the bar goes once it is ready.
    with Progress(TextColumn(f"loading {path.name}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("load", total=None)
        # a bad file raises errors.BadFile, which r1.cli.main prints as one line
        return LLM(path, dtype=parse_dtype(args.dtype), profile=args.profile,
                   load_progress=lambda done, total: bar.update(task, completed=done, total=total),
                   **({"compile": True} if args.compile else {}))


def _params(args) -> SamplingParams:
    try:
        return SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                              max_tokens=args.max_tokens, seed=args.seed, stop=args.stop or [],
                              thinking_budget=args.thinking_budget)
    except ValueError as e:
        raise SystemExit(f"r1: {e}")


def run_cmd(args: argparse.Namespace) -> int:
    if len(args.args) == 1:
        args.model, prompt = None, args.args[0]
    elif len(args.args) == 2:
        args.model, prompt = args.args
    else:
        raise SystemExit("r1 run: usage: r1 run [MODEL] PROMPT")
    llm = _load(args)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": prompt}]
    console = Console(highlight=False)
    streaming = not args.json

    answer = AnswerPrinter(console)

    def on_delta(r: str, c: str) -> None:
        if r and args.show_thinking:
            console.print(Text(r, style="dim"), end="")
        if c:
            if args.show_thinking and not on_delta.answer_started:
                console.print()
            on_delta.answer_started = True
            answer.feed(c)

    on_delta.answer_started = False
    try:
        turn = respond(llm, messages, _params(args), raw=args.raw, on_delta=on_delta if streaming else None)
        answer.close()
    except ModelOutputError:
        raise  # the model is broken, not the request: r1's one-line error, exit 1
    except ValueError as e:  # the request does not fit (context, vocabulary): say so, no traceback
        print(f"r1 run: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"reasoning": turn.reasoning, "content": turn.content, "prompt_tokens": turn.prompt_tokens,
                          "completion_tokens": turn.completion_tokens, "reasoning_tokens": turn.reasoning_tokens,
                          "finish_reason": turn.finish_reason}))
    else:
        console.print()
    return 0


def chat_cmd(args: argparse.Namespace) -> int:
    llm = _load(args)
    tok = llm.tokenizer
    params = _params(args)
    console = Console(highlight=False)
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    last_reasoning = ""
    console.print(Text("r1 chat — /exit to quit, /clear to start over, /think to unfold the last thinking", style="dim"))
    while True:
        try:
            line = input("› ") if sys.stdin.isatty() else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not line:  # EOF on a pipe
            break
        line = line.strip()
        if not line:
            continue
        if line == "/exit":
            break
        if line == "/clear":
            history = history[:1] if args.system else []
            console.print(Text("(conversation cleared)", style="dim"))
            continue
        if line == "/think":
            console.print(Text(last_reasoning or "(no thinking in the last answer)", style="dim"))
            continue
        history.append({"role": "user", "content": line})
        with _ctrl_c_stops() as stopped:  # from here to the next prompt, Ctrl-C stops this reply only
            last_reasoning = _chat_turn(llm, history, params, console, stopped)
    return 0


def _chat_turn(llm, history: list[dict], params: SamplingParams, console: Console, stopped: threading.Event) -> str:
    """One reply of `r1 chat`, streamed: the thinking's tail while it lasts, folded to one line
    when the answer starts, then the answer. Appends the answer to history; returns the reasoning."""
    tok = llm.tokenizer
    thinking = Text(style="dim")
    answer = AnswerPrinter(console)
    live = Live(thinking, console=console, transient=True, refresh_per_second=8)
    state = {"answering": False, "t0": time.perf_counter()}

    def fold(reasoning: str, tokens: int | None = None) -> None:
        """The thinking, done: one dim line in place of the streaming tail."""
        if reasoning.strip():
            n = f" ({tokens} tokens)" if tokens else ""
            secs = time.perf_counter() - state["t0"]
            console.print(Text(f"▸ Thought for {secs:.1f}s{n} — /think to unfold", style="dim"))

    def on_delta(r: str, c: str) -> None:
        if r and not state["answering"]:  # the tail of the thinking while it streams
            thinking.append(r)
            live.update(Text("thinking… " + thinking.plain[-400:].replace("\n", " "), style="dim"))
        if c:
            if not state["answering"]:  # the answer starts: fold the thinking, then stream the answer
                live.stop()
                fold(thinking.plain, len(tok.encode(thinking.plain)) if thinking.plain.strip() else None)
                state["answering"] = True
            answer.feed(c)

    live.start()
    try:
        turn = respond(llm, history, params, on_delta=on_delta, should_stop=stopped.is_set)
    finally:
        live.stop()
        answer.close()
    if not state["answering"]:
        fold(turn.reasoning, turn.reasoning_tokens or len(tok.encode(turn.reasoning)))
    console.print()
    if stopped.is_set():  # as Ollama's CLI: the reply stops, the conversation goes on
        console.print(Text("(stopped)", style="dim"))
    # earlier turns keep only the answer; R1's template strips reasoning anyway
    history.append({"role": "assistant", "content": turn.content})
    return turn.reasoning


@contextlib.contextmanager
def _ctrl_c_stops():
    """While a reply streams, Ctrl-C (SIGINT) only sets the yielded event, which respond() polls
    between engine steps: the reply ends cleanly there, never inside a step's bookkeeping."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield stopped
        return
    old = signal.signal(signal.SIGINT, lambda signum, frame: stopped.set())
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGINT, old)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", help="system prompt (R1's guidance: leave it empty)")
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=R1_TEMPERATURE, help="0 = greedy (default %(default)s)")
    p.add_argument("--top-p", type=float, default=R1_TOP_P)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    p.add_argument("--profile", default="base", choices=["base", "turbo"],
                   help="turbo: quantized weights (a GGUF keeps its own blocks), compiled decode steps (tens of "
                        "seconds of compiling on the first reply), MTP speculative decoding where it pays")
    p.add_argument("--thinking-budget", type=int, help="max reasoning tokens; then </think> is forced")
    p.add_argument("--compile", action="store_true",
                   help="compile decode steps (torch.compile): ~2x faster on CPU after tens of seconds of "
                        "compiling on the first reply (turbo always compiles)")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="answer one prompt: r1 run [MODEL] PROMPT")
    p.add_argument("args", nargs="+", metavar="[MODEL] PROMPT",
                   help="a safetensors folder or .gguf file (default: the embedded model), then the prompt")
    p.add_argument("--show-thinking", action="store_true", help="print the reasoning, dimmed, above the answer")
    p.add_argument("--json", action="store_true", help="print {reasoning, content, prompt_tokens, completion_tokens}")
    p.add_argument("--raw", action="store_true", help="no chat template: the prompt is the text to continue")
    _common(p)
    p.set_defaults(func=run_cmd)
    c = sub.add_parser("chat", help="interactive chat with the thinking shown folded")
    c.add_argument("model", nargs="?", help="a safetensors folder or .gguf file (default: the embedded model)")
    _common(c)
    c.set_defaults(func=chat_cmd)
