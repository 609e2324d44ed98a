"""``latencylab.Client``: the Python SDK (httpx + pydantic only; no server dependencies)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from latencylab.config import get_client_settings
from latencylab.schemas import (
    BenchmarkCreate,
    BenchmarkPublic,
    DevicePublic,
    MeasureSettings,
    ModelPublic,
    ProfilePublic,
    RawTimes,
    Target,
    TokenPublic,
)

DONE = {"succeeded", "partial", "failed"}


class LatencyLabError(RuntimeError):
    """The coordinator answered with an error; ``status_code`` and ``detail`` say which."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class Client:
    """Talk to a LatencyLab coordinator.

    >>> c = Client()  # LATENCYLAB_SERVER / LATENCYLAB_TOKEN, or ./.latencylab/admin.token
    >>> m = c.upload_model("mbv2.onnx", metadata={"accuracy": {"top1": 71.8}})
    >>> b = c.wait(c.benchmark(m.id, [{"runtime": "onnxruntime", "device": "local"}]).id)
    """

    def __init__(
        self, server: str | None = None, token: str | None = None, timeout: float = 60
    ) -> None:
        cfg = get_client_settings()
        self.server = (server or cfg.resolved_server).rstrip("/")
        token = token or cfg.resolved_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server + "/api/v1", headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _json(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except (ValueError, AttributeError):
                detail = r.text
            raise LatencyLabError(
                r.status_code, detail if isinstance(detail, str) else json.dumps(detail)
            )
        return r.json() if r.content else None

    # ------------------------------------------------------------------ basics
    def health(self) -> dict[str, Any]:
        return self._json(self.http.get("/health"))

    def whoami(self) -> TokenPublic:
        return TokenPublic.model_validate(self._json(self.http.get("/tokens/me")))

    def create_token(self, scope: str = "user", name: str = "") -> TokenPublic:
        return TokenPublic.model_validate(
            self._json(self.http.post("/tokens", json={"scope": scope, "name": name}))
        )

    # ------------------------------------------------------------------ models
    def upload_model(
        self, path: str | Path, name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> ModelPublic:
        """Upload a model file (streamed from disk)."""
        path = Path(path)
        data: dict[str, str] = {}
        if name:
            data["name"] = name
        if metadata is not None:
            data["metadata"] = json.dumps(metadata)
        with path.open("rb") as fh:
            r = self.http.post("/models", files={"file": (path.name, fh)}, data=data, timeout=600)
        return ModelPublic.model_validate(self._json(r))

    def models(self) -> list[ModelPublic]:
        return [ModelPublic.model_validate(m) for m in self._json(self.http.get("/models"))]

    def model(self, model_id: int) -> ModelPublic:
        return ModelPublic.model_validate(self._json(self.http.get(f"/models/{model_id}")))

    # ------------------------------------------------------------------ benchmarks
    def benchmark(
        self,
        model_id: int,
        targets: Iterable[Target | dict[str, Any]],
        settings: MeasureSettings | dict[str, Any] | None = None,
    ) -> BenchmarkPublic:
        """Queue a benchmark: one job per target."""
        body = BenchmarkCreate(
            model_id=model_id,
            targets=[t if isinstance(t, Target) else Target.model_validate(t) for t in targets],
            settings=settings
            if isinstance(settings, MeasureSettings)
            else MeasureSettings.model_validate(settings or {}),
        )
        return BenchmarkPublic.model_validate(
            self._json(self.http.post("/benchmarks", json=body.model_dump(mode="json")))
        )

    def get_benchmark(self, bench_id: int) -> BenchmarkPublic:
        return BenchmarkPublic.model_validate(self._json(self.http.get(f"/benchmarks/{bench_id}")))

    def wait(
        self,
        bench_id: int,
        timeout: float = 3600,
        poll_s: float = 0.5,
        on_update: Callable[[BenchmarkPublic], None] | None = None,
    ) -> BenchmarkPublic:
        """Poll until the benchmark is done (succeeded, partial or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            bench = self.get_benchmark(bench_id)
            if on_update:
                on_update(bench)
            if bench.status in DONE:
                return bench
            if time.monotonic() > deadline:
                raise TimeoutError(f"benchmark {bench_id} still {bench.status} after {timeout}s")
            time.sleep(poll_s)

    def raw_times(self, bench_id: int, result_id: int) -> RawTimes:
        return RawTimes.model_validate(
            self._json(self.http.get(f"/benchmarks/{bench_id}/results/{result_id}/raw"))
        )

    def profile(self, bench_id: int, result_id: int) -> ProfilePublic:
        return ProfilePublic.model_validate(
            self._json(self.http.get(f"/benchmarks/{bench_id}/results/{result_id}/profile"))
        )

    # ------------------------------------------------------------------ fleet
    def devices(self) -> list[DevicePublic]:
        return [DevicePublic.model_validate(d) for d in self._json(self.http.get("/devices"))]
