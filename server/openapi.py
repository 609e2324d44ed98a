"""The OpenAPI contract of errors: every 4xx/5xx of every operation is declared, with ONE
schema, ``latencylab.errors.ErrorBody`` (what ``server.errors`` answers with).

Routes declare the statuses they return with ``responses=errors(404, 422)``; routers behind a
token add ``AUTH`` (``errors(401, 403)``). ``install_openapi`` then makes the document whole:
FastAPI's own 422 schema (``HTTPValidationError``) becomes ``ErrorBody``, and the statuses any
operation may answer with when the server, not the request, fails (500, 503, 507) are added,
and 400 to every operation with a JSON body (FastAPI's answer to a body it cannot parse).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from latencylab.errors import ErrorBody

DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (e.g. a body that is not JSON or not a well-formed form)",
    401: "Missing, unknown or revoked token (`code` says which)",
    403: "The token's scope does not allow this",
    404: "No such resource",
    409: "Conflicts with the current state (`code` says which)",
    410: "Gone: it was deleted (`code` says what remains readable)",
    413: "Over a size limit",
    415: "Unsupported media type or model format",
    422: "Invalid request: `detail` names each offending field, `errors` lists them",
    500: "Internal error (a bug): the request may be retried",
    503: "Temporarily unavailable (e.g. the database): retry after `Retry-After` seconds",
    507: "The server's disk is full: nothing was stored",
}
SERVER_SIDE = (500, 503, 507)
"""Statuses any operation may answer with when the server fails: added to every operation."""

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route for these error statuses, each an ``ErrorBody``."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


AUTH = errors(401, 403)
"""What the token dependencies (``CurrentUser``, ``CurrentAgent``, ``CurrentAdmin``) answer."""


def _complete(schema: dict[str, Any]) -> dict[str, Any]:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for server_side in SERVER_SIDE:
                responses.setdefault(str(server_side), {"description": DESCRIPTIONS[server_side]})
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                # FastAPI answers a JSON body it cannot read (bad UTF-8, too deep) with 400
                responses.setdefault("400", {"description": DESCRIPTIONS[400]})
            for status, response in responses.items():
                if status[0] in "45":  # 4xx/5xx, FastAPI's own 422 (HTTPValidationError) too
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    if "ErrorBody" not in components:
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components["ErrorBody"] = body
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``app.openapi_url`` (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
