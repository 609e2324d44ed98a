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
import logging
import os
import tempfile
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from latencylab.conversions import ConversionOutcome
from latencylab.errors import ErrorCode, parse_error
from latencylab.schemas import JobReport, LeasedJob, MeasureResult
from latencylab.transfers import StoredArtifact, UploadFinish, UploadStart, UploadTicket

log = logging.getLogger("latencylab.agent")
CHUNK = 1 << 20


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
        # Presigned object-storage URLs: no Authorization header (the URL is the credential).
        self.storage = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()
        self.storage.close()

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

    def lease(self, device_id: int, wait_s: float = 0) -> LeasedJob | None:
        """The next job, or None. ``wait_s``: a long-poll -- the coordinator answers once a
        job is there or after ``wait_s`` (a coordinator without long-polls at once)."""
        params = {"wait_s": wait_s} if wait_s > 0 else None
        t = self.http.timeout
        wait = httpx.Timeout(
            connect=t.connect, read=(t.read or 30.0) + wait_s, write=t.write, pool=t.pool
        )
        r = self._check(self.http.post(f"/agents/{device_id}/lease", params=params, timeout=wait))
        if r.status_code == 204:
            return None
        return LeasedJob.model_validate(r.json())

    def report(self, device_id: int, job_id: int, result: MeasureResult) -> dict[str, Any]:
        body = JobReport(result=result).model_dump(mode="json")
        r = self.http.post(f"/agents/{device_id}/jobs/{job_id}/report", json=body)
        return self._check(r).json()

    def upload(self, device_id: int, job_id: int, path: Path, fmt: str) -> str:
        """Upload a file a job produced; returns its sha256. With object storage the bytes go
        to a presigned URL (one the storage refuses, expired, is asked for once more), then
        the coordinator verifies and files them (finalize); with its local-disk store they
        are POSTed to the coordinator."""
        sha256, size = file_digest(path)
        start = UploadStart(format=fmt, sha256=sha256, size=size).model_dump()
        for attempt in range(2):
            r = self.http.post(f"/agents/{device_id}/jobs/{job_id}/uploads", json=start)
            ticket = UploadTicket.model_validate(self._check(r).json())
            if ticket.mode == "coordinator" or ticket.url is None or ticket.upload_id is None:
                return self._upload_here(device_id, job_id, path, fmt)
            with path.open("rb") as fh:
                put = self.storage.put(
                    ticket.url,
                    content=fh,
                    headers={**ticket.headers, "Content-Length": str(size)},
                    timeout=600,
                )
            if put.status_code == 403 and attempt == 0:
                log.warning("object storage refused the URL for %s; asking again", path.name)
                continue
            if put.status_code >= 300:
                raise ProtocolError(
                    f"object storage refused the upload of {path.name}: {put.status_code} "
                    f"{put.text[:300]}",
                    put.status_code,
                )
            log.info("%s (%d bytes) uploaded to %s (presigned URL)", path.name, size, _where(put))
            finish = UploadFinish(format=fmt, sha256=sha256).model_dump()
            r = self.http.post(
                f"/agents/{device_id}/jobs/{job_id}/uploads/{ticket.upload_id}", json=finish
            )
            return StoredArtifact.model_validate(self._check(r).json()).sha256
        raise ProtocolError(f"object storage refused the upload of {path.name} twice")

    def _upload_here(self, device_id: int, job_id: int, path: Path, fmt: str) -> str:
        """Stream the file to the coordinator itself (its local-disk artifact store)."""
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
        """Fetch an artifact into the cache (verified against its hash); reuse a cached copy.

        With object storage the coordinator answers 307 to a presigned URL (issued only while
        a device of this token holds a job using the artifact): the bytes come from the
        storage, never through the coordinator. A URL the storage refuses (expired while the
        agent waited) is asked for once more."""
        dest = cache_dir / sha256[:2] / sha256
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".dl-")
        try:
            with os.fdopen(fd, "wb") as fh:
                digest, source = self._fetch(sha256, fh)
            if digest != sha256:
                raise ProtocolError(f"artifact {sha256} arrived corrupted (hash {digest})")
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        log.info("artifact %s downloaded from %s", sha256[:12], source)
        return dest

    def _fetch(self, sha256: str, fh: BinaryIO) -> tuple[str, str]:
        """Write the artifact's bytes to ``fh``: ``(their sha256, where they came from)``."""
        for attempt in range(2):
            with self.http.stream("GET", f"/artifacts/{sha256}") as r:
                if not r.is_redirect:
                    if r.status_code >= 400:
                        r.read()
                        raise error_for(r)
                    return _copy(r, fh), "the coordinator"
                url = str(r.headers["location"])
            with self.storage.stream("GET", url) as s:
                if s.status_code == 403 and attempt == 0:
                    s.read()
                    log.warning("object storage refused the URL for %s; asking again", sha256[:12])
                    continue
                if s.status_code >= 400:
                    s.read()
                    raise ProtocolError(
                        f"object storage refused artifact {sha256}: {s.status_code} {s.text[:300]}",
                        s.status_code,
                    )
                return _copy(s, fh), f"{_where(s)} (presigned URL)"
        raise ProtocolError(f"object storage refused artifact {sha256} twice")


def file_digest(path: Path) -> tuple[str, int]:
    """``(sha256, size)`` of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _copy(r: httpx.Response, fh: BinaryIO) -> str:
    fh.seek(0)
    fh.truncate()
    digest = hashlib.sha256()
    for chunk in r.iter_bytes(CHUNK):
        digest.update(chunk)
        fh.write(chunk)
    return digest.hexdigest()


def _where(r: httpx.Response) -> str:
    """host:port a response came from (agent logs name it: which server moved the bytes)."""
    url = r.request.url
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
