"""The SDK's predictor methods (``Client`` inherits them): build, watch, download, predict.

httpx + pydantic only; the local predictor needs the ``predict`` extra, imported only when a
bundle is loaded (``latencylab.predictors.LocalKernelPredictor``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from latencylab.predictors import (
    LocalKernelPredictor,
    ModelPrediction,
    ModelPredictions,
    PredictorCreate,
    PredictorPublic,
    PredictorResume,
)


class PredictorMethods:
    """Mixed into ``latencylab.Client`` (it provides ``http`` and ``_json``)."""

    http: httpx.Client

    def _json(self, r: httpx.Response) -> Any:  # pragma: no cover - Client's
        raise NotImplementedError

    def create_predictor(
        self,
        device: str = "local",
        runtime: str = "onnxruntime",
        threads: int = 1,
        precision: str = "fp32",
        batch_size: int = 1,
        **extra: Any,
    ) -> PredictorPublic:
        """Start (or find the identical) predictor build; ``extra``: settings,
        network_settings, statistic, options, fresh (see ``PredictorCreate``)."""
        body = PredictorCreate.model_validate(
            {
                "device": device,
                "runtime": runtime,
                "threads": threads,
                "precision": precision,
                "batch_size": batch_size,
                **extra,
            }
        )
        r = self.http.post("/predictors", json=body.model_dump(mode="json", exclude_unset=True))
        return PredictorPublic.model_validate(self._json(r))

    def predictors(self) -> list[PredictorPublic]:
        return [PredictorPublic.model_validate(p) for p in self._json(self.http.get("/predictors"))]

    def get_predictor(self, predictor_id: int) -> PredictorPublic:
        """A build's status, progress and (once validated) accuracy report."""
        r = self.http.get(f"/predictors/{predictor_id}")
        return PredictorPublic.model_validate(self._json(r))

    def resume_predictor(self, predictor_id: int, **settings: Any) -> PredictorPublic:
        """Retry failed samples/networks; ``settings``/``network_settings`` may raise timeouts."""
        body = PredictorResume.model_validate(settings).model_dump(mode="json", exclude_none=True)
        r = self.http.post(f"/predictors/{predictor_id}/resume", json=body)
        return PredictorPublic.model_validate(self._json(r))

    def wait_predictor(
        self,
        predictor_id: int,
        timeout: float = 7200,
        poll_s: float = 1.0,
        on_update: Callable[[PredictorPublic], None] | None = None,
    ) -> PredictorPublic:
        """Poll until the build succeeded or failed."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.get_predictor(predictor_id)
            if on_update:
                on_update(p)
            if p.status in ("succeeded", "failed"):
                return p
            if time.monotonic() > deadline:
                raise TimeoutError(f"predictor {predictor_id} still {p.phase} after {timeout}s")
            time.sleep(poll_s)

    def predictor_bundle(self, predictor_id: int) -> str:
        """The trained bundle's JSON text."""
        r = self.http.get(f"/predictors/{predictor_id}/bundle", timeout=300)
        if r.status_code >= 400:
            self._json(r)
        return r.text

    def predict_model(self, predictor_id: int, model_id: int) -> ModelPrediction:
        """Server-side prediction of an uploaded model (per-kernel breakdown)."""
        r = self.http.post(f"/predictors/{predictor_id}/predict", json={"model_id": model_id})
        return ModelPrediction.model_validate(self._json(r))

    def model_predictions(self, model_id: int) -> ModelPredictions:
        """The model's predicted latency on every device with a succeeded predictor."""
        r = self.http.get(f"/models/{model_id}/predictions", timeout=300)
        return ModelPredictions.model_validate(self._json(r))

    def predictor(
        self, predictor_id: int | None = None, *, wait: bool = True, **create: Any
    ) -> LocalKernelPredictor:
        """A local predictor, downloaded once per client: ``predict(path_or_onnx)``.

        Give a ``predictor_id``, or the :meth:`create_predictor` arguments (``device=...,
        runtime=..., threads=...``) to build or reuse one (waiting for it when ``wait``)."""
        if predictor_id is None:
            predictor_id = self.create_predictor(**create).id
            if wait:
                self.wait_predictor(predictor_id)
        cache: dict[int, LocalKernelPredictor] = self.__dict__.setdefault("_predictors", {})
        if predictor_id not in cache:
            meta = self.get_predictor(predictor_id)
            local = LocalKernelPredictor(self.predictor_bundle(predictor_id), meta)
            if meta.status != "succeeded":
                return local  # not final yet: do not cache
            cache[predictor_id] = local
        return cache[predictor_id]
