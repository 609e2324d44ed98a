"""Errors of the coordinator: ``ApiError`` (an HTTP status + an ``ErrorCode``) and the
handlers that turn every failure into the one documented ``ErrorBody``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latencylab.errors import ErrorBody, ErrorCode, default_code

log = logging.getLogger("latencylab.server")


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code: ``raise ApiError(409, ErrorCode.device_taken,
    "device 'x' is registered with another token")``; ``errors``: the ``ErrorBody.errors``."""

    def __init__(
        self,
        status_code: int,
        code: ErrorCode,
        detail: str,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(status_code, detail, headers=headers)
        self.code = code
        self.errors = errors


def error_response(
    status: int, detail: str, code: ErrorCode | None = None, **extra: Any
) -> JSONResponse:
    body = ErrorBody(detail=detail, code=code or default_code(status), **extra)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status)


def _validation_summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        if e.get("type") == "json_invalid":  # FastAPI's: loc is ("body", offset)
            why = (e.get("ctx") or {}).get("error", "invalid")
            where = e.get("loc") or ("body", "?")
            parts.append(f"body is not valid JSON ({why} at character {where[-1]})")
            continue
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def _jsonable(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        out.append(item)
    return out


def _unparsable_body(exc: StarletteHTTPException) -> str | None:
    """What FastAPI's bare 400 "error parsing the body" was about, where we can tell."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None or getattr(exc, "code", None) is not None:
        return None
    if isinstance(cause, RecursionError):
        return "body is not valid JSON: it nests too deeply for the server to read"
    if isinstance(cause, ValueError):  # e.g. undecodable bytes, an integer of 5000 digits
        return f"body is not valid JSON: {str(cause)[:200]}"
    return None


def install_handlers(app: FastAPI) -> None:
    """Every error, expected or not, leaves as an ``ErrorBody``."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None)
        detail = _unparsable_body(exc) or str(exc.detail)
        response = error_response(
            exc.status_code, detail, code, errors=getattr(exc, "errors", None)
        )
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        raw = list(exc.errors())
        return error_response(
            422, _validation_summary(raw), ErrorCode.validation_error, errors=_jsonable(raw)
        )

    @app.exception_handler(Exception)
    async def unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}", ErrorCode.internal)
