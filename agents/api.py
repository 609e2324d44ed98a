"""The agent's side of the coordinator protocol (register, heartbeat, lease, download, report)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from latencylab.conversions import ConversionOutcome
from latencylab.schemas import JobReport, LeasedJob, MeasureResult


class ProtocolError(RuntimeError):
    pass


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
        if r.status_code in (401, 403):
            raise SystemExit(f"coordinator refused the agent token: {r.status_code} {r.text}")
        if r.status_code >= 400:
            raise ProtocolError(
                f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
            )
        return r

    def register(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._check(self.http.post("/agents/register", json=body)).json()

    def heartbeat(self, device_id: int, job_id: int | None, progress: dict[str, Any]) -> bool:
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
                    self._check(r)
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
