"""``latencylab.Client``: the Python SDK (httpx + pydantic only; no server dependencies)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from latencylab.checks import BenchmarkCheckPublic
from latencylab.config import TokenOrigin, get_client_settings
from latencylab.errors import ErrorCode, default_code, parse_error
from latencylab.predictor_client import PredictorMethods
from latencylab.schemas import (
    BenchmarkCreate,
    BenchmarkPublic,
    DevicePublic,
    GcReport,
    MeasureSettings,
    ModelPublic,
    ModelUpdate,
    ProfilePublic,
    RawTimes,
    Target,
    TokenPublic,
)
from latencylab.tables import (
    PredictResponse,
    SpacePublic,
    TableCreate,
    TableExport,
    TablePublic,
)

if TYPE_CHECKING:
    from latencylab.spaces import LocalPredictor

DONE = {"succeeded", "partial", "failed"}


class LatencyLabError(RuntimeError):
    """The coordinator answered with an error.

    ``status_code`` and ``detail`` (for people) say what; ``code`` (an ``ErrorCode``: branch on
    this, never on ``detail``) says why; ``errors`` lists the offending fields of a 422
    (``loc``, ``msg``, ``type``); ``token`` is the origin of the token the request carried
    (its prefix, and whether it came from an argument, ``LATENCYLAB_TOKEN`` or the token file).
    """

    def __init__(
        self,
        status_code: int,
        detail: str,
        code: ErrorCode | None = None,
        errors: list[dict[str, Any]] | None = None,
        token: TokenOrigin | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.code = code or default_code(status_code)
        self.errors = errors or []
        self.token = token


class RetryOverload(httpx.HTTPTransport):
    """Reads (GET/HEAD) answered 503 are retried after the coordinator's Retry-After (capped,
    a few times): 503 means "overloaded, nothing changed, try again" (docs/agents.md)."""

    TRIES = 4
    MAX_WAIT_S = 10.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.TRIES):
            response = super().handle_request(request)
            if (
                response.status_code != 503
                or request.method not in ("GET", "HEAD")
                or attempt == self.TRIES - 1
            ):
                return response
            try:
                wait = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                wait = 1.0
            response.close()
            time.sleep(min(max(wait, 0.1), self.MAX_WAIT_S))
        raise AssertionError("unreachable")


class Client(PredictorMethods):
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
        token, self.token_origin = cfg.find_token(token)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.server + "/api/v1",
            headers=headers,
            timeout=timeout,
            transport=RetryOverload(),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _json(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                payload = r.json()
            except ValueError:
                payload = r.text
            body = parse_error(r.status_code, payload)
            raise LatencyLabError(
                r.status_code, body.detail, body.code, body.errors, self.token_origin
            )
        return r.json() if r.content else None

    # ------------------------------------------------------------------ basics
    def health(self) -> dict[str, Any]:
        return self._json(self.http.get("/health"))

    def whoami(self) -> TokenPublic:
        return TokenPublic.model_validate(self._json(self.http.get("/tokens/me")))

    def create_token(
        self, scope: str = "user", name: str = "", devices: list[str] | None = None
    ) -> TokenPublic:
        """Create a token (admin); ``devices`` scopes an agent token to names or globs."""
        body: dict[str, Any] = {"scope": scope, "name": name}
        if devices is not None:
            body["devices"] = list(devices)
        return TokenPublic.model_validate(self._json(self.http.post("/tokens", json=body)))

    def list_tokens(self) -> list[TokenPublic]:
        """Every token (admin): scope, device scope, registered devices, revocation time."""
        return [TokenPublic.model_validate(t) for t in self._json(self.http.get("/tokens"))]

    def revoke_token(self, token_id: int) -> TokenPublic:
        """Revoke a token (admin) at once; the devices registered with it are released."""
        return TokenPublic.model_validate(self._json(self.http.post(f"/tokens/{token_id}/revoke")))

    def release_device(self, device_id: int) -> DevicePublic:
        """Free a device from the token that registered it (admin), so another may take it."""
        return DevicePublic.model_validate(
            self._json(self.http.post(f"/devices/{device_id}/release"))
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

    def models(self, sha256: str | None = None) -> list[ModelPublic]:
        """Uploaded models, newest first; ``sha256``: only those of that file."""
        params = {"sha256": sha256} if sha256 else None
        r = self.http.get("/models", params=params)
        return [ModelPublic.model_validate(m) for m in self._json(r)]

    def model(self, model_id: int) -> ModelPublic:
        return ModelPublic.model_validate(self._json(self.http.get(f"/models/{model_id}")))

    def update_model(
        self,
        model_id: int,
        *,
        name: str | None = None,
        accuracy: dict[str, float] | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ModelPublic:
        """Correct a model (its uploader or an admin): what is None stays as it is;
        ``accuracy``/``tags`` replace those metadata keys, ``metadata`` is merged key by key
        (a None value there removes the key)."""
        fields = {"name": name, "accuracy": accuracy, "tags": tags, "metadata": metadata}
        body = ModelUpdate.model_validate({k: v for k, v in fields.items() if v is not None})
        r = self.http.patch(
            f"/models/{model_id}", json=body.model_dump(mode="json", exclude_unset=True)
        )
        return ModelPublic.model_validate(self._json(r))

    def delete_model(self, model_id: int, results: str = "keep") -> None:
        """Delete a model (its uploader or an admin). ``results="keep"``: its benchmarks and
        results stay readable by id, the model leaves lists and the Pareto page;
        ``"delete"``: they go with it. A job a device is running is a 409 (retry later)."""
        self._json(self.http.delete(f"/models/{model_id}", params={"results": results}))

    def collect_garbage(self, grace_s: float | None = None) -> GcReport:
        """Delete the artifacts nothing needs (admin); ``grace_s`` overrides the server's
        grace period (``LATENCYLAB_GC_GRACE_S``)."""
        params = {"grace_s": grace_s} if grace_s is not None else None
        r = self.http.post("/artifacts/gc", params=params, timeout=600)
        return GcReport.model_validate(self._json(r))

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

    def check_benchmark(
        self,
        targets: Iterable[Target | dict[str, Any]],
        model_id: int | None = None,
        model_format: str | None = None,
        settings: MeasureSettings | dict[str, Any] | None = None,
    ) -> BenchmarkCheckPublic:
        """Dry run of :meth:`benchmark` on the coordinator (nothing is created): the same rules,
        for a stored model (``model_id``), a model of ``model_format`` not uploaded yet, or
        neither. Targets and settings go as given, so the coordinator's validation is the one
        that answers: a refused one raises ``LatencyLabError`` (422, ``errors`` naming each)."""
        body: dict[str, Any] = {
            "targets": [t.model_dump(mode="json") if isinstance(t, Target) else t for t in targets]
        }
        if settings is not None:
            body["settings"] = (
                settings.model_dump(mode="json")
                if isinstance(settings, MeasureSettings)
                else settings
            )
        if model_id is not None:
            body["model_id"] = model_id
        if model_format is not None:
            body["model_format"] = model_format
        r = self.http.post("/benchmarks/check", json=body)
        return BenchmarkCheckPublic.model_validate(self._json(r))

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

    # ------------------------------------------------------------------ latency tables
    def spaces(self) -> list[SpacePublic]:
        """The built-in NAS search spaces."""
        return [SpacePublic.model_validate(s) for s in self._json(self.http.get("/spaces"))]

    def create_table(
        self,
        space: str,
        device: str = "local",
        runtime: str = "onnxruntime",
        resolution: int | None = None,
        batch_size: int = 1,
        threads: int = 1,
        precision: str = "fp32",
        **extra: Any,
    ) -> TablePublic:
        """Start (or find the identical) latency-table build; ``extra``: settings, statistic,
        validate_n, seed, fresh (see :class:`latencylab.tables.TableCreate`)."""
        body = TableCreate.model_validate(
            {
                "space": space,
                "device": device,
                "runtime": runtime,
                "resolution": resolution,
                "batch_size": batch_size,
                "threads": threads,
                "precision": precision,
                **extra,
            }
        )
        r = self.http.post("/tables", json=body.model_dump(mode="json", exclude_unset=True))
        return TablePublic.model_validate(self._json(r))

    def tables(self) -> list[TablePublic]:
        return [TablePublic.model_validate(t) for t in self._json(self.http.get("/tables"))]

    def table(self, table_id: int) -> TablePublic:
        """A table's status, progress and (once validated) quality."""
        return TablePublic.model_validate(self._json(self.http.get(f"/tables/{table_id}")))

    def resume_table(self, table_id: int) -> TablePublic:
        """Retry a table's failed blocks; measured entries are kept."""
        r = self.http.post(f"/tables/{table_id}/resume")
        return TablePublic.model_validate(self._json(r))

    def wait_table(
        self,
        table_id: int,
        timeout: float = 7200,
        poll_s: float = 1.0,
        on_update: Callable[[TablePublic], None] | None = None,
    ) -> TablePublic:
        """Poll until the table is built and validated (succeeded) or failed."""
        deadline = time.monotonic() + timeout
        while True:
            table = self.table(table_id)
            if on_update:
                on_update(table)
            if table.status in ("succeeded", "failed"):
                return table
            if time.monotonic() > deadline:
                raise TimeoutError(f"table {table_id} still {table.status} after {timeout}s")
            time.sleep(poll_s)

    def export_table(self, table_id: int, format: str = "json") -> str:
        """The table as text: ``json``, ``csv`` or ``ofa-yaml`` (Once-for-All's LUT format)."""
        r = self.http.get(f"/tables/{table_id}", params={"format": format}, timeout=300)
        if r.status_code >= 400:
            self._json(r)
        return r.text

    def table_export(self, table_id: int) -> TableExport:
        """The table with every entry (``?format=json``), parsed."""
        return TableExport.model_validate_json(self.export_table(table_id, "json"))

    def predict(
        self, table_id: int, architectures: Iterable[Any], resolution: int | None = None
    ) -> PredictResponse:
        """Server-side prediction: ``latency_ms`` (best predictor) and ``lut_sum_ms``."""
        body = {"architectures": list(architectures), "resolution": resolution}
        r = self.http.post(f"/tables/{table_id}/predict", json=body, timeout=300)
        return PredictResponse.model_validate(self._json(r))

    def latency_table(
        self, table_id: int | None = None, *, wait: bool = True, **create: Any
    ) -> LocalPredictor:
        """A local predictor (>= 100k archs/s) of a table, downloaded once per client.

        Give a ``table_id``, or the :meth:`create_table` arguments (``space=...``) to build or
        reuse one (waiting for it when ``wait``). ``predict(archs)`` returns
        ``(latency_ms, lut_sum_ms)`` as the server's predict does.
        """
        from latencylab.spaces import LocalPredictor

        if table_id is None:
            table_id = self.create_table(**create).id
            if wait:
                done = self.wait_table(table_id)
                if done.status != "succeeded":
                    raise LatencyLabError(409, f"table {table_id} {done.status}: {done.error}")
        cache: dict[int, LocalPredictor] = self.__dict__.setdefault("_tables", {})
        if table_id not in cache:
            t = self.table_export(table_id)
            if len(t.entries) < t.progress.blocks_total:
                raise LatencyLabError(
                    409,
                    f"table {table_id} is {t.status}: {len(t.entries)} of "
                    f"{t.progress.blocks_total} blocks measured",
                )
            entries = {k: e.model_dump() for k, e in t.entries.items()}
            pred = LocalPredictor(t.space, entries, t.calibration, t.resolution)
            if t.status != "succeeded":
                return pred  # not final yet: do not cache
            cache[table_id] = pred
        return cache[table_id]
