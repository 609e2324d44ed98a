"""The agent's side of the coordinator protocol (register, heartbeat, lease, download, report).

A refusal arrives as a typed exception chosen by HTTP status and the error body's ``code``
(``latencylab.errors.ErrorCode``), never by its text:

=====================  ============================  ==========================================
exception              status / code                 what the agent does
=====================  ============================  ==========================================
``TokenRejected``      401 token_invalid / _revoked  stops (exit status 3) saying what to do
                       / _missing
``Forbidden``          403 forbidden                 stops: wrong scope, a name outside the
                                                     token's device scope, a device released
                                                     by an admin or held by another token
``DeviceTaken``        409 device_taken              stops: another token holds the name
``LeaseLost``          409 or 403 lease_lost         drops that job and goes on
``DeviceNotRegistered`` 404 device_not_registered    registers again
``Overloaded``         503                           backs off (Retry-After, with jitter)
``ProtocolError``      anything else                 logs it; retried where that is safe
=====================  ============================  ==========================================

``Fatal`` (the first three) means no retry can help until an operator acts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from latencylab.conversions import ConversionOutcome
from latencylab.errors import ErrorCode, parse_error
from latencylab.schemas import JobReport, LeasedJob, MeasureResult


class AgentError(RuntimeError):
    """The coordinator refused a request: ``status`` and ``code`` say why (None for a failure
    found on our side, such as a corrupted download)."""

    def __init__(
        self, message: str, status: int | None = None, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ProtocolError(AgentError):
    """Any other refusal: a bad request, a missing job, a server error."""


class Overloaded(ProtocolError):
    """503: the coordinator is busy; ``retry_after`` is its Retry-After in seconds, if sent."""

    def __init__(
        self, message: str, status: int, code: ErrorCode, retry_after: float | None
    ) -> None:
        super().__init__(message, status, code)
        self.retry_after = retry_after


class LeaseLost(AgentError):
    """The job is no longer this device's (lease expired, requeued, taken): drop it."""


class DeviceNotRegistered(AgentError):
    """The coordinator does not know this device (any more): register again."""


class Fatal(AgentError):
    """This agent cannot go on until an operator acts; retrying does not help."""


class TokenRejected(Fatal):
    """401: the token is unknown, revoked or was not sent."""


class Forbidden(Fatal):
    """403: the token may not do this (scope, device scope, a device it no longer holds)."""


class DeviceTaken(Fatal):
    """409 device_taken: another token holds this device name."""


BY_CODE: dict[ErrorCode, type[AgentError]] = {
    ErrorCode.token_missing: TokenRejected,
    ErrorCode.token_invalid: TokenRejected,
    ErrorCode.token_revoked: TokenRejected,
    ErrorCode.forbidden: Forbidden,
    ErrorCode.lease_lost: LeaseLost,
    ErrorCode.device_not_registered: DeviceNotRegistered,
    ErrorCode.device_taken: DeviceTaken,
}
BY_STATUS: dict[int, type[AgentError]] = {401: TokenRejected, 403: Forbidden}

WHAT_TO_DO: dict[ErrorCode, str] = {
    ErrorCode.token_missing: "pass an agent token with --token or --token-file",
    ErrorCode.token_invalid: (
        "this coordinator never issued that token: check --token/--token-file (a typo, or a "
        "token of another coordinator?) or create one with 'latencylab token create --scope agent'"
    ),
    ErrorCode.token_revoked: (
        "restart the agent with a new agent token (an admin creates one with "
        "'latencylab token create --scope agent')"
    ),
}


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for(r: httpx.Response) -> AgentError:
    """The typed exception for an error response (its body already read)."""
    try:
        payload: Any = r.json()
    except ValueError:
        payload = r.text
    body = parse_error(r.status_code, payload)
    message = f"{r.request.method} {r.request.url.path}: {r.status_code} {body.code}: {body.detail}"
    if body.code in WHAT_TO_DO:
        message += f" -- {WHAT_TO_DO[body.code]}"
    if r.status_code == 503:
        wait = retry_after(r.headers.get("retry-after"))
        return Overloaded(message, r.status_code, body.code, wait)
    cls = BY_CODE.get(body.code) or BY_STATUS.get(r.status_code, ProtocolError)
    return cls(message, r.status_code, body.code)


class AgentAPI:
    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 400:
            raise error_for(r)
        return r

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._check(self.http.post("/agents/register", json=body)).json()

    def heartbeat(self, device_id: int, job_id: int | None, progress: dict[str, Any]) -> bool:
        """Extend the job's lease; ``LeaseLost`` once it is not ours (``False`` from a
        coordinator that answers ``{"keep": false}`` instead)."""
        r = self.http.post(
            f"/agents/{device_id}/heartbeat", json={"job_id": job_id, "progress": progress}
        )
        return bool(self._check(r).json().get("keep", True))

    def lease(self, device_id: int) -> LeasedJob | None:
        r = self._check(self.http.post(f"/agents/{device_id}/lease"))
        if r.status_code == 204:
            return None
        return LeasedJob.model_validate(r.json())

    def report(self, device_id: int, job_id: int, result: MeasureResult) -> dict[str, Any]:
        body = JobReport(result=result).model_dump(mode="json")
        r = self.http.post(f"/agents/{device_id}/jobs/{job_id}/report", json=body)
        return self._check(r).json()

    def upload(self, device_id: int, job_id: int, path: Path, fmt: str) -> str:
        """Stream a file a job produced to the coordinator; returns its sha256."""
        with path.open("rb") as fh:
            r = self.http.post(
                f"/agents/{device_id}/jobs/{job_id}/artifacts",
                params={"format": fmt},
                files={"file": (path.name, fh)},
                timeout=600,
            )
        return str(self._check(r).json()["sha256"])

    def report_conversion(
        self, device_id: int, job_id: int, outcome: ConversionOutcome
    ) -> dict[str, Any]:
        r = self.http.post(
            f"/agents/{device_id}/jobs/{job_id}/conversion", json=outcome.model_dump(mode="json")
        )
        return self._check(r).json()

    def download(self, sha256: str, cache_dir: Path) -> Path:
        """Fetch an artifact into the cache (verified against its hash); reuse a cached copy."""
        dest = cache_dir / sha256[:2] / sha256
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as fh, self.http.stream("GET", f"/artifacts/{sha256}") as r:
                if r.status_code >= 400:
                    r.read()
                    raise error_for(r)
                for chunk in r.iter_bytes(1 << 20):
                    digest.update(chunk)
                    fh.write(chunk)
            if digest.hexdigest() != sha256:
                raise ProtocolError(
                    f"artifact {sha256} arrived corrupted (hash {digest.hexdigest()})"
                )
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return dest
