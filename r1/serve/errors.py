"""Errors as the clients expect them: OpenAI's `{"error": {"message", "type", "param", "code"}}` on
/v1 routes, Ollama's `{"error": "message"}` on /api routes, always with the right status.

Every failure a request can cause ends here with a 4xx naming the culprit (the parameter, the
numbers that do not fit); only a bug in the server gives a 500, and its body says so without
leaking internals.
"""
from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("r1.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "overloaded_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def _is_ollama(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, message: str, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    if _is_ollama(request):
        body = {"error": message}
    else:
        body = {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                          "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc_to_param(loc: tuple) -> str:
    # ("body", "messages", 0, "content") -> "messages[0].content". pydantic adds union-branch tags
    # ("str", "list[...]", "constrained-str", "function-after[...]") that mean nothing to a client;
    # field names here are Python identifiers, so anything else is such a tag.
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _FIELD.fullmatch(part) and part not in _TYPE_TAGS:
            out += ("." if out else "") + part
    return out


_FIELD = re.compile(r"[a-z_][a-z0-9_]*")
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "bytes"}


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return f"the request body is not valid JSON: {ctx.get('error', 'malformed')}", None
    if first.get("type") == "model_attributes_type" and tuple(first.get("loc", ())) == ("body",):
        hint = " (send it with Content-Type: application/json)" if isinstance(first.get("input"), bytes) else ""
        return f"the request body must be a JSON object{hint}", None
    # of the errors about the same field (one per union branch), the deepest says most
    root = _loc_to_param(tuple(first.get("loc", ()))).split(".")[0].split("[")[0]
    same = [e for e in errors if _loc_to_param(tuple(e.get("loc", ()))).startswith(root)] or [first]
    best = max(same, key=lambda e: len(_loc_to_param(tuple(e.get("loc", ())))))
    param = _loc_to_param(tuple(best.get("loc", ())))
    msg = str(best.get("msg", "invalid value")).removeprefix("Value error, ")
    if not param:  # a check across fields: its message starts with the field it is about
        m = _FIELD.match(msg)
        param = m.group(0) if m and m.group(0) not in ("the", "a", "an") else ""
        return msg, param or None
    more = len(errors) - len(same)
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"invalid value for '{param}': {msg}{extra}", param


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(request, exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        msg, param = validation_message(exc)
        return error_response(request, 400, msg, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(request, exc.status_code, msg, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request, 500, f"internal server error ({type(exc).__name__})")
