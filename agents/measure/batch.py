"""Batch measurement: many small kernel models in ONE fresh subprocess (job kind
``predictor_batch``), the standard protocol (``run_protocol``) for each model in turn.

A fresh process per measurement costs ~1.3 s (interpreter, runtime import, job round trip)
while a kernel model's steady state takes a fraction of that, so a predictor build measures
its kernels in batches: the job's artifact is a zip of ONNX files with a ``manifest.json``
(``latencylab.predictors.KernelManifest``); the subprocess imports the runtime once, then
for every model loads it, runs first inference, warmup and steady state with the job's
settings, keeps its raw times and unloads it. The report is one ``MeasureResult`` whose
``environment[BATCH_ENV_KEY]`` lists each model's own result (``KernelOutcome``); the
coordinator files them as samples. With ``profile`` on, each outcome carries its time in
layout conversions (``layout_ms``: the median times the share of the per-layer profile in
``predictor.kernel_models.LAYOUT_OPS``, as ``bench.predictor`` measures it) and the profile
itself is dropped: the predictor's layout model needs only that number. Whether batching biases the kernels is checked by the
build itself: some are measured again the standard way, one fresh process each.

Devices whose measurer is not the local subprocess (a phone over adb, a Jetson) measure the
batch's models one by one through their own measurer instead.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agents.measure.isolation import REPO_ROOT, run_isolated
from converters.archives import extract
from converters.sandbox import Emit, SandboxEnd, run_sandboxed
from latencylab.predictors import BATCH_ENV_KEY, KernelManifest, KernelOutcome
from latencylab.schemas import MeasureResult, MeasureSettings, MeasureSpec, TensorSpec

if TYPE_CHECKING:
    from agents.agent import Agent
    from latencylab.schemas import LeasedJob

ENTRY = "agents.measure.batch:measure_batch"
MAX_UNPACKED = 4 << 30
KEEP_ENV = ("host_load", "pid")


class BatchSpec(BaseModel):
    items: list[tuple[str, MeasureSpec]]


class BatchResult(BaseModel):
    outcomes: list[KernelOutcome]
    environment: dict[str, Any] = {}


def _slim(result: MeasureResult) -> MeasureResult:
    """One model's result without the bulk every model of the batch shares."""
    env = {k: result.environment[k] for k in KEEP_ENV if k in result.environment}
    protocol = result.environment.get("protocol") or {}
    env["protocol"] = {
        k: protocol[k] for k in ("runtime_import_ms", "min_reached", "ci_rel_halfwidth")
        if k in protocol
    }  # fmt: skip
    if "failed_phase" in result.environment:
        env["failed_phase"] = result.environment["failed_phase"]
    return result.model_copy(update={"environment": env, "profile": []})


def outcome(key: str, result: MeasureResult) -> KernelOutcome:
    """One model's outcome: its slim result and its layout-conversion time (from the
    profile, None without one)."""
    from predictor.kernel_models import kernel_latency  # onnx and numpy, not the predict extra

    layout_ms = None
    p50 = result.latency_ms.p50 if result.latency_ms is not None else None
    if result.status == "succeeded" and p50 is not None and result.profile:
        layers = [(layer.type, layer.time_ms) for layer in result.profile]
        layout_ms = max(0.0, p50 - kernel_latency(p50, layers))
    return KernelOutcome(key=key, result=_slim(result), layout_ms=layout_ms)


def measure_batch(spec: BatchSpec, emit: Emit | None = None) -> BatchResult:
    """The subprocess side: measure every model of ``spec`` in this process, in order."""
    from agents.runners import get_runner

    from .protocol import run_protocol

    outcomes: list[KernelOutcome] = []
    shared: dict[str, Any] = {}
    n = len(spec.items)
    for i, (key, item) in enumerate(spec.items):
        if emit is not None:
            emit({"phase": "batch", "done": i, "total": n})
        try:
            runner = get_runner(item.runtime)(item)
        except Exception as exc:
            result = MeasureResult(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            result = run_protocol(runner, item.settings)
        if not shared and result.environment:
            shared = dict(result.environment)
        outcomes.append(outcome(key, result))
    if emit is not None:
        emit({"phase": "batch", "done": n, "total": n})
    return BatchResult(outcomes=outcomes, environment=shared)


def _specs(agent: Agent, job: LeasedJob, folder: Path) -> list[tuple[str, MeasureSpec]]:
    manifest = KernelManifest.model_validate_json((folder / "manifest.json").read_text())
    settings = MeasureSettings.model_validate(job.settings.model_dump())
    out = []
    for item in manifest.items:
        path = (folder / item.file).resolve()
        if folder.resolve() not in path.parents:
            raise ValueError(f"manifest entry {item.file!r} points outside the batch")
        spec = MeasureSpec(
            runtime=job.runtime,
            model_path=str(path),
            model_format="onnx",
            inputs=[TensorSpec.model_validate(t) for t in item.inputs],
            precision=job.precision,
            batch_size=job.batch_size,
            threads=job.threads,
            settings=settings,
            options=job.options,
            host=agent.settings.host_tools(),
        )
        out.append((item.key, spec))
    return out


def _one_by_one(agent: Agent, items: list[tuple[str, MeasureSpec]], workdir: Path) -> BatchResult:
    """A device with its own measurer (adb, tegrastats): each model through it."""
    outcomes = []
    for i, (key, spec) in enumerate(items):
        agent._on_progress({"phase": "batch", "done": i, "total": len(items)})
        r = agent.measure(spec, workdir=workdir, cancel=agent._cancel)
        outcomes.append(outcome(key, r))
    return BatchResult(outcomes=outcomes)


def _in_one_process(items: list[tuple[str, MeasureSpec]], agent: Agent, workdir: Path) -> Any:
    timeout = min(sum(s.settings.timeout_s for _, s in items), 7200.0)
    rundir = Path(tempfile.mkdtemp(prefix="batch-", dir=workdir))
    try:
        out = run_sandboxed(
            BatchSpec(items=items), ENTRY, BatchResult, rundir=rundir, timeout_s=timeout,
            cwd=REPO_ROOT, on_event=agent._on_progress, cancel=agent._cancel,
        )  # fmt: skip
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    if out.result is not None:
        out.result.environment["worker_wall_s"] = round(out.wall_s, 3)
        return out.result
    how = {SandboxEnd.timed_out: f"timed out after {timeout:g} s"}.get(out.end, out.end.value)
    tail = f"\nlast stderr lines:\n{out.stderr_tail}" if out.stderr_tail else ""
    return f"the batch process {how}: {out.error or ''}{tail}".strip()


def batch_result(agent: Agent, job: LeasedJob, workdir: Path) -> MeasureResult:
    """Download and unpack the batch, measure it, and make the one report of the job."""
    try:
        archive = agent.api.download(job.artifact_sha256, agent.settings.cache_dir)
        folder = workdir / "kernels"
        extract(archive, folder, max_total=MAX_UNPACKED)
        items = _specs(agent, job, folder)
    except Exception as exc:
        return MeasureResult(status="failed", error=f"cannot read the kernel batch: {exc}")
    if agent.measure is run_isolated:
        got = _in_one_process(items, agent, workdir)
    else:
        got = _one_by_one(agent, items, workdir)
    if isinstance(got, str):
        return MeasureResult(status="failed", error=got)
    env = dict(got.environment)
    env[BATCH_ENV_KEY] = [o.model_dump(mode="json") for o in got.outcomes]
    env["batch_size_models"] = len(items)
    return MeasureResult(status="succeeded", environment=env)


def batch_job(agent: Agent, job: LeasedJob, workdir: Path) -> None:
    """The handler of ``predictor_batch`` jobs (``Agent.handlers``): measure, then report."""
    result = batch_result(agent, job, workdir)
    if agent._cancel.is_set():
        return
    assert agent.device_id is not None
    device_id = agent.device_id
    agent.send(f"report of batch job {job.id}", lambda: agent.api.report(device_id, job.id, result))
