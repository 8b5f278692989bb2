"""What one server holds (the engine, its tokenizer, metrics, guard) and the request lifecycle both
API front ends share: admit -> stream choices -> account, with disconnects turned into aborts."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from r1.engine.engine import EngineConfig, LLMEngine, QueueFull, RequestOutput
from r1.engine.sampling import SamplingParams
from r1.serve.async_engine import AsyncEngine, EngineDead, ShuttingDown
from r1.serve.errors import APIError, bad_request
from r1.serve.guard import GuardPipeline, Verdict
from r1.serve.metrics import RequestTimer, ServerMetrics
from r1.serve.prompting import Prepared, template_capabilities
from r1.serve.stream import ChoiceStream, Delta, new_id

log = logging.getLogger("r1.serve")


@dataclass
class ModelInfo:
    name: str
    path: str | None = None
    family: str = ""
    parameters: int = 0
    quantization: str = "F32"
    format: str = "safetensors"
    size_bytes: int = 0
    context_length: int = 0
    created: int = field(default_factory=lambda: int(time.time()))
    about: str = ""  # what the model is for, from its card (card.json beside the weights), shown by the page
    examples: list[str] = field(default_factory=list)  # prompts its card suggests


def read_card(path: str | Path) -> tuple[str, list[str]]:
    """(about, examples) from the card.json an `export` stage writes into a model folder; ("", [])
    when there is none, and a warning, not a failure, when it is unreadable (the model still serves)."""
    from r1.train.export import CARD_FILE

    f = Path(path) / CARD_FILE
    if not f.is_file():
        return "", []
    try:
        card = json.loads(f.read_text(encoding="utf-8"))
        about, examples = card.get("about", ""), card.get("examples", [])
        if not isinstance(about, str) or not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise ValueError("'about' must be a string and 'examples' a list of strings")
        return about, examples[:8]
    except (OSError, ValueError, AttributeError) as e:
        log.warning("%s: ignored (%s)", f, e)
        return "", []


class ServerState:
    """Built by create_app; `load()` fills in the engine (at once for a given engine, in a thread
    for a model path, so /health can answer 503 meanwhile)."""

    def __init__(self, source: LLMEngine | str | Path, *, tokenizer=None, model_name: str | None = None,
                 profile: str = "base", dtype: str = "float32", engine_config: EngineConfig | None = None,
                 guard: GuardPipeline | None = None, log_prompts: bool = False, default_max_tokens: int | None = None,
                 default_thinking_budget: int | None = None, shutdown_grace_s: float = 10.0) -> None:
        self.source, self.tokenizer, self.profile, self.dtype = source, tokenizer, profile, dtype
        self.engine_config = engine_config
        self.guard, self.log_prompts = guard, log_prompts
        self.default_max_tokens, self.shutdown_grace_s = default_max_tokens, shutdown_grace_s
        self.default_thinking_budget = default_thinking_budget  # for requests that set none
        if model_name is None:
            model_name = Path(source).name if isinstance(source, (str, Path)) else "r1"
            model_name = model_name.removesuffix(".gguf")
        self.info = ModelInfo(name=model_name, path=str(source) if isinstance(source, (str, Path)) else None)
        if self.info.path:
            self.info.about, self.info.examples = read_card(self.info.path)
        self.engine: AsyncEngine | None = None
        self.load_error: str | None = None
        self.metrics = ServerMetrics(lambda: self.engine.snapshot if self.engine else None)
        self._grammar = None
        self._grammar_lock = threading.Lock()
        self._loader: threading.Thread | None = None

    # ------------------------------------------------------------------ loading
    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.alive and self.engine.accepting

    def start(self) -> None:
        if isinstance(self.source, LLMEngine):
            self._attach(self.source)
        else:
            self._loader = threading.Thread(target=self._load_path, name="r1-load", daemon=True)
            self._loader.start()

    def _load_path(self) -> None:
        try:
            import r1
            from r1.commands.common import parse_dtype
            from r1.engine.profiles import load_for_profile

            path = Path(self.source)
            tok = self.tokenizer or r1.load_tokenizer(path)
            model, overrides = load_for_profile(path, self.profile, dtype=parse_dtype(self.dtype))
            cfg = self.engine_config or EngineConfig()
            cfg = EngineConfig(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if k in cfg.__dict__}})
            self.tokenizer = tok
            self._attach(LLMEngine(model, tok, cfg))
        except BaseException as e:  # reported by /health and every model route
            log.exception("loading %s failed", self.source)
            self.load_error = f"{type(e).__name__}: {e}"

    def _attach(self, engine: LLMEngine) -> None:
        self.tokenizer = engine.tokenizer
        if self.tokenizer is None:
            raise ValueError("the served engine needs a tokenizer (chat templates, text output)")
        m = engine.model
        cfg = m.config
        n_params = sum(p.numel() for p in m.parameters())
        info = self.info
        info.family, info.parameters = cfg.arch, n_params
        info.context_length = engine.max_model_len
        info.size_bytes = sum(p.numel() * p.element_size() for p in m.parameters()) + \
            sum(b.numel() * b.element_size() for b in m.buffers())
        info.quantization = _quant_name(m)
        if info.path and info.path.endswith(".gguf"):
            info.format = "gguf"
        ae = AsyncEngine(engine, on_scheduled=lambda rid, s: self.metrics.queue_time.observe(s))
        ae.start()
        self.engine = ae

    async def shutdown(self) -> None:
        if self._loader is not None:
            # a load cannot be interrupted halfway through torch; let it end rather than leave a
            # thread inside torch while the interpreter exits (that aborts the process)
            await asyncio.to_thread(self._loader.join)
        if self.engine is not None:
            await self.engine.shutdown(self.shutdown_grace_s)

    @property
    def capabilities(self) -> dict[str, bool]:
        return template_capabilities(self.tokenizer) if self.tokenizer is not None else {}

    def grammar(self):
        """The xgrammar compiler for this model, built on first use (~0.1 s)."""
        with self._grammar_lock:
            if self._grammar is None:
                from r1.serve.structured import GrammarCompiler

                eng = self.engine.engine
                self._grammar = GrammarCompiler(self.tokenizer, eng.model.config.vocab_size, sorted(eng.eos_ids))
            return self._grammar

    # ------------------------------------------------------------------ checks
    def require_ready(self) -> AsyncEngine:
        if self.load_error:
            raise APIError(503, f"the model failed to load: {self.load_error}", code="model_load_failed")
        if self.engine is None:
            raise APIError(503, "the model is still loading; retry shortly", code="model_loading",
                           headers={"Retry-After": "5"})
        if not self.engine.accepting:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        return self.engine

    def admit(self) -> None:
        """Shed load before rendering and tokenizing a prompt that could not be queued anyway (the
        engine's own bound, checked again when the request is added, stays authoritative)."""
        eng = self.require_ready()
        bound = eng.engine.config.max_waiting
        if bound and eng.snapshot.waiting >= bound:
            self.metrics.requests.labels("admission", "429").inc()
            raise APIError(429, f"the server is busy ({eng.snapshot.waiting} requests waiting, limit {bound}); "
                                "retry later", code="queue_full", headers={"Retry-After": "1"})

    def check_model(self, name: str | None, param: str = "model") -> None:
        if name is None or name == "":
            return  # single-model server: an omitted model means this one
        n = name.removesuffix(":latest")
        if n not in (self.info.name, self.info.name.lower()):
            raise APIError(404, f"the model {name!r} does not exist; this server serves {self.info.name!r}",
                           param, "model_not_found")

    async def check_prompt(self, text: str) -> Verdict | None:
        if self.guard is None:
            return None
        v = await self.guard.check(text, "prompt")
        if v.flagged:
            self.metrics.guard_flags.labels("prompt").inc()
            log.info("guard refused a prompt: %s (%s)", v.category, v.guard)
            return v
        return None

    def processors(self, kind: str, schema: Any, prep: Prepared, param: str) -> list[Callable]:
        """Logits processors for structured output (`kind` json_object | json_schema | tools)."""
        from r1.serve.structured import GrammarError

        try:
            g = self.grammar()
            compiled = {"json_object": lambda: g.json_object(), "json_schema": lambda: g.json_schema(schema),
                        "tools": lambda: g.tool_calls(schema)}[kind]()
        except GrammarError as e:
            raise bad_request(str(e), param) from e
        return [g.processor(compiled, wait_for_reasoning=prep.think_in_prompt)]

    @staticmethod
    def sampling(param_names: dict[str, str], **kw) -> SamplingParams:
        """SamplingParams with its ValueError turned into a 400 naming the API's parameter."""
        procs = kw.pop("logits_processors", None)
        fields = getattr(SamplingParams, "__dataclass_fields__", {})
        if "skip_special_tokens" not in fields:
            # until the engine takes it, text keeps skipping special tokens (tool-call tokens that a
            # tokenizer marks special would then be lost; SmolLM2/GGUF vocabularies write them as text)
            kw.pop("skip_special_tokens", None)
        try:
            p = SamplingParams(**{k: v for k, v in kw.items() if v is not None})
        except ValueError as e:
            msg = str(e)
            field_ = msg.split(" ", 1)[0]
            raise bad_request(msg.replace(field_, param_names.get(field_, field_), 1), param_names.get(field_, field_)) from e
        if procs:
            if "logits_processors" not in getattr(SamplingParams, "__dataclass_fields__", {}):
                raise APIError(501, "structured output needs the engine's logits_processors hook, which this "
                                    "r1 build lacks", code="unsupported")
            p.logits_processors = procs
        return p

    # ------------------------------------------------------------------ the request lifecycle
    async def generate(self, request: Request, endpoint: str, prep: Prepared, params: SamplingParams,
                       choices: list[ChoiceStream]) -> AsyncIterator[tuple[RequestOutput, list[Delta]]]:
        """Admit the request (raising APIError for the HTTP status before anything is sent), then
        yield each engine output with its per-choice deltas. A client disconnect aborts the request."""
        engine = self.require_ready()
        rid = new_id("req")
        arrival = time.monotonic()
        try:
            stream = await engine.add(rid, prep.ids, params, think_in_prompt=prep.think_in_prompt)
        except QueueFull as e:
            self.metrics.requests.labels(endpoint, "429").inc()
            raise APIError(429, f"the server is busy ({e}); retry later", code="queue_full",
                           headers={"Retry-After": "1"}) from e
        except ShuttingDown as e:
            raise APIError(503, str(e), code="shutting_down") from e
        except EngineDead as e:
            raise APIError(503, str(e), code="engine_down") from e
        except ValueError as e:
            raise bad_request(str(e), "messages" if endpoint.endswith("chat") else "prompt") from e
        return self._run(request, endpoint, rid, stream, arrival, prep, choices)

    async def _run(self, request: Request, endpoint: str, rid: str, stream, arrival: float, prep: Prepared,
                   choices: list[ChoiceStream]) -> AsyncIterator[tuple[RequestOutput, list[Delta]]]:
        timer = RequestTimer(self.metrics, arrival)
        watcher = asyncio.create_task(_watch_disconnect(request, stream))
        status, last = "200", None
        try:
            async for out in stream:
                last = out
                failed = next((o for o in out.outputs if o.finish_reason == "error"), None)
                if failed is not None:  # non-finite logits: the model, not the request, is broken
                    status = "500"
                    raise APIError(500, failed.error or "the model failed", code="model_error")
                deltas = [await choices[o.index].feed(o) for o in out.outputs]
                timer.tokens(sum(d.n_tokens for d in deltas), time.monotonic())
                yield out, deltas
                if all(c.done for c in choices):
                    break  # every choice finished (or was refused by the output guard)
            if stream.aborted:
                status = "499"  # nginx's "client closed request"
        except EngineDead as e:
            status = "500"
            raise APIError(500, str(e), code="engine_error") from e
        except asyncio.CancelledError:
            status = "499"
            raise
        finally:
            watcher.cancel()
            stream.abort()  # no-op when finished; frees the KV blocks otherwise
            now = time.monotonic()
            timer.done(now)
            self.metrics.requests.labels(endpoint, status).inc()
            for c in choices:
                if c.finish_reason:
                    self.metrics.finished.labels(c.finish_reason).inc()
            if last is not None and last.num_cached_tokens:
                self.metrics.cached_tokens.inc(last.num_cached_tokens)
            if any(c.flagged for c in choices):
                self.metrics.guard_flags.labels("output").inc()
            extra = f" prompt={prep.prompt!r}" if self.log_prompts else ""
            log.info("%s %s status=%s prompt_tokens=%d completion_tokens=%d cached=%d finish=%s secs=%.3f%s",
                     endpoint, rid, status, len(prep.ids), sum(c.completion_tokens for c in choices),
                     last.num_cached_tokens if last else 0, ",".join(str(c.finish_reason) for c in choices),
                     now - arrival, extra)


async def _watch_disconnect(request: Request, stream) -> None:
    """Abort the request when the client goes away, even while nothing is being written (a request
    still waiting in the queue would otherwise only notice at its first token)."""
    try:
        while True:
            msg = await request.receive()
            if msg.get("type") == "http.disconnect":
                stream.abort()
                return
    except (asyncio.CancelledError, RuntimeError):
        return


def _quant_name(model) -> str:
    names = {type(mod).__name__ for mod in model.modules()}
    for cls, label in (("Int4Linear", "Q4"), ("Int8Linear", "Q8"), ("FP8Linear", "FP8")):
        if cls in names:
            return label
    p = next(model.parameters(), None)
    return {"torch.float32": "F32", "torch.bfloat16": "BF16", "torch.float16": "F16"}.get(str(p.dtype), "F32") \
        if p is not None else "F32"
