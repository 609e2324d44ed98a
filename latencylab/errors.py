"""The one error body every 4xx/5xx of the coordinator carries, and its machine-readable codes.

Light imports only (pydantic): the SDK, the CLI and the agents read ``code`` to decide what
to do; they never match ``detail`` text, which is for people.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    """Why a request failed. New codes may be added; existing ones keep their meaning."""

    bad_request = "bad_request"
    validation_error = "validation_error"
    token_missing = "token_missing"
    token_invalid = "token_invalid"
    token_revoked = "token_revoked"
    forbidden = "forbidden"
    not_found = "not_found"
    conflict = "conflict"
    device_not_registered = "device_not_registered"
    device_taken = "device_taken"
    lease_lost = "lease_lost"
    payload_too_large = "payload_too_large"
    unsupported_media_type = "unsupported_media_type"
    insufficient_storage = "insufficient_storage"
    unavailable = "unavailable"
    internal = "internal"
    model_deleted = "model_deleted"
    model_busy = "model_busy"
    model_in_use = "model_in_use"
    checksum_mismatch = "checksum_mismatch"
    inspection_limit = "inspection_limit"


DEFAULT_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.bad_request,
    401: ErrorCode.token_invalid,
    403: ErrorCode.forbidden,
    404: ErrorCode.not_found,
    409: ErrorCode.conflict,
    413: ErrorCode.payload_too_large,
    415: ErrorCode.unsupported_media_type,
    422: ErrorCode.validation_error,
    503: ErrorCode.unavailable,
    507: ErrorCode.insufficient_storage,
}
"""The code an error gets when the route raising it names none."""


def default_code(status: int) -> ErrorCode:
    if status in DEFAULT_CODES:
        return DEFAULT_CODES[status]
    return ErrorCode.internal if status >= 500 else ErrorCode.bad_request


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What went wrong and, where it helps, what to do")
    code: ErrorCode = Field(description="Machine-readable reason; clients branch on this")
    errors: list[dict[str, Any]] | None = Field(
        None, description="For validation errors: one entry per offending field (loc, msg, type)"
    )


def parse_error(status: int, payload: Any) -> ErrorBody:
    """The ``ErrorBody`` of a response (tolerant of bodies from older coordinators/proxies)."""
    if isinstance(payload, dict):
        detail = payload.get("detail")
        code = payload.get("code")
        try:
            code_ = ErrorCode(code) if code else default_code(status)
        except ValueError:
            code_ = default_code(status)
        errors = payload.get("errors")
        text = detail if isinstance(detail, str) else str(detail or f"HTTP {status}")
        return ErrorBody(
            detail=text, code=code_, errors=errors if isinstance(errors, list) else None
        )
    return ErrorBody(detail=str(payload or f"HTTP {status}"), code=default_code(status))
