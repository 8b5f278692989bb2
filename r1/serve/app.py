"""The HTTP server: `create_app(engine_or_model_path, ...)` builds a FastAPI app serving one model
through the OpenAI/DeepSeek API (/v1), the Ollama API (/api), operations endpoints (/health,
/metrics) and the web chat page (/).

Everything the app holds lives on its `ServerState` (app.state.r1); two apps in one process share
nothing. API keys guard every model route (/v1/*, /api/*); /health, /metrics and the static page
stay open so orchestrators and the page itself can load without a key (the page asks for one).
"""
from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from r1.engine.engine import EngineConfig, LLMEngine
from r1.serve import errors, ollama, openai
from r1.serve.errors import APIError
from r1.serve.guard import GuardPipeline
from r1.serve.metrics import CONTENT_TYPE
from r1.serve.state import ServerState

log = logging.getLogger("r1.serve")
WEB_DIR = Path(__file__).parent / "web"
_MODEL_PREFIXES = ("/v1/", "/api/")


class AccessLog:
    """One log line per HTTP request: method, path, status, time -- never the prompt (that is
    --log-prompts, logged per request by the handlers). Plain ASGI rather than BaseHTTPMiddleware,
    which would stand between a streaming response and the client's disconnect."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [0]

        async def send_logged(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status[0], (time.perf_counter() - t0) * 1000)


class JSONBodies:
    """Model routes take JSON whatever the Content-Type says: `curl -d '{...}'` sends
    application/x-www-form-urlencoded, and Ollama (whose API clients call with curl) accepts it."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(_MODEL_PREFIXES):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


# Request bodies past this many bytes are refused (413) before they are read: the longest context
# here is text of well under 1 MiB, and a body is parsed and tokenized whole.
DEFAULT_MAX_BODY_BYTES = 4 * 2**20


class BodyLimit:
    """413 for a request body over `limit` bytes, before the app reads it: at once when Content-Length
    says so, else as soon as the bytes received pass it (a chunked upload). Nothing past the limit is
    buffered, and the refused request reaches no handler."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    def _message(self) -> str:
        return (f"the request body is over the server's limit of {self.limit / 2**20:g} MiB "
                "(r1 serve --max-body-mb)")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            response = errors.error_response(Request(scope), 413, self._message(), code="request_too_large")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # the app's error handlers answer it (errors.install)
                    raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)


def _check_key(keys: Sequence[str]):
    async def dependency(request: Request) -> None:
        if not keys:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        # compare against every key in constant time: no timing oracle on which prefix matched
        if not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys) or not token:
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    return dependency


def create_app(engine_or_model_path: LLMEngine | str | Path, *, tokenizer=None, model_name: str | None = None,
               api_keys: Sequence[str] = (), profile: str = "base", dtype: str = "float32",
               engine_config: EngineConfig | None = None, guard: GuardPipeline | None = None,
               log_prompts: bool = False, default_max_tokens: int | None = None,
               default_thinking_budget: int | None = None, shutdown_grace_s: float = 10.0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """engine_or_model_path: a ready LLMEngine (its tokenizer is used), or a model path loaded in
    the background for `profile` ("base" | "turbo") while /health answers 503. max_body_bytes: larger
    request bodies get 413 unread."""
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    if isinstance(engine_or_model_path, (str, Path)) and not Path(engine_or_model_path).exists():
        raise FileNotFoundError(f"{engine_or_model_path}: no such model file or folder")
    if not isinstance(engine_or_model_path, (str, Path, LLMEngine)):
        raise TypeError(f"create_app() takes an LLMEngine or a model path, got {type(engine_or_model_path).__name__}")
    keys = [k for k in api_keys if k]
    st = ServerState(engine_or_model_path, tokenizer=tokenizer, model_name=model_name, profile=profile, dtype=dtype,
                     engine_config=engine_config, guard=guard, log_prompts=log_prompts,
                     default_max_tokens=default_max_tokens, default_thinking_budget=default_thinking_budget,
                     shutdown_grace_s=shutdown_grace_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st.start()
        try:
            yield
        finally:
            await st.shutdown()  # finish in-flight requests within the grace period, abort the rest

    app = FastAPI(title="r1", version="0.1.0", lifespan=lifespan,
                  description="DeepSeek-R1 serving: OpenAI/DeepSeek and Ollama compatible APIs.")
    app.state.r1 = st
    errors.install(app)

    app.add_middleware(JSONBodies)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(AccessLog)
    auth = [Depends(_check_key(keys))]
    app.include_router(openai.router(st), dependencies=auth)
    app.include_router(ollama.router(st), dependencies=auth)

    @app.get("/health")
    async def health():
        if st.load_error:
            return JSONResponse({"status": "error", "error": st.load_error}, status_code=503)
        if st.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        if not st.engine.accepting:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if not st.engine.alive:
            return JSONResponse({"status": "error", "error": "the engine thread stopped"}, status_code=503)
        return {"status": "ok", "model": st.info.name}

    @app.get("/metrics")
    async def metrics():
        return Response(st.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/config.json", include_in_schema=False)
    async def page_config():
        # what the page needs to know before its first API call
        return {"auth": bool(keys), "model": st.info.name, "thinking": bool(st.capabilities.get("thinking"))
                if st.tokenizer is not None else False, "about": st.info.about, "examples": st.info.examples}

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():  # browsers ask for it whatever the page links
        return FileResponse(WEB_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    def openapi() -> dict:
        """FastAPI's schema, with every request's `model` field an enum of the one model served: a
        client (or schemathesis) reading the schema learns the only name the server accepts."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for comp in schema.get("components", {}).get("schemas", {}).values():
                model = comp.get("properties", {}).get("model")
                if model is not None and model.get("type") == "string":
                    model["enum"] = [st.info.name]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
