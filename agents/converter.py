"""Converter worker: leases ``convert`` jobs, converts in an isolated subprocess
(``converters.run.convert_isolated``: timeout + memory limit), uploads the artifact and the
converter's log, and reports the outcome with the numerical validation.

    latencylab converter --server URL --token-file agent.token

A GPU/Jetson agent handles ``convert:tensorrt`` jobs with the same handler, since an engine
must be built on the GPU that runs it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import platform
import zipfile
from pathlib import Path
from typing import Any

from agents.agent import Agent
from agents.capabilities import host_info
from converters.run import ConversionRequest, ConversionResult, convert_isolated
from latencylab.conversions import ConversionError, ConversionOutcome, Validation
from latencylab.schemas import LeasedJob

log = logging.getLogger("latencylab.converter")

# target -> (modules that must all be importable, distribution whose version is advertised)
TOOLCHAINS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (("onnx", "onnxruntime", "torch", "onnxscript"), "onnxscript"),
    "tflite": (("litert_torch", "onnx2torch", "ai_edge_litert", "torch"), "litert-torch"),
    "openvino": (("openvino", "onnxruntime"), "openvino"),
    "coreml": (("coremltools", "onnx2torch", "torch"), "coremltools"),
    "tensorrt": (("tensorrt", "onnxruntime"), "tensorrt"),
    "executorch": (("executorch", "pandas", "onnx2torch", "torch", "onnxruntime"), "executorch"),
}
SOURCE_SUFFIX = {"onnx": ".onnx", "pt2": ".pt2"}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def detect_targets(
    include: tuple[str, ...] = ("onnx", "tflite", "openvino", "coreml", "executorch"),
) -> dict[str, str]:
    """``{"convert:<target>": version}`` for every toolchain installed (no heavy import)."""
    found = {}
    for target in include:
        modules, dist = TOOLCHAINS[target]
        if all(_has(m) for m in modules):
            try:
                found[f"convert:{target}"] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                found[f"convert:{target}"] = "unknown"
    return found


def describe() -> dict[str, Any]:
    info = host_info()
    return {
        "class": "converter",
        "runtimes": detect_targets(),
        "attributes": {
            "host": info["hostname"],
            "arch": info["arch"],
            "os": platform.system().lower(),
        },
        "info": info,
    }


def _pack(path: Path, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """A directory artifact (OpenVINO IR, .mlpackage) travels as a stored zip."""
    if path.is_file():
        return path, {}
    archive = workdir / (path.name + ".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(path.parent))
    return archive, {"archive": "zip"}


def _outcome(result: ConversionResult) -> tuple[ConversionOutcome, Path | None]:
    status = result.status
    validation = Validation(**result.validation) if result.validation else None
    error = result.error
    art = result.artifact
    if status == "ok" and art:
        return ConversionOutcome(
            status="succeeded", validation=validation, seconds=result.seconds
        ), Path(art.path)
    if status == "validation_failed" and validation is not None:
        error = ConversionError(
            step="validate",
            message=f"outputs differ from the ONNX Runtime reference beyond the tolerance "
            f"(max_abs_err={validation.max_abs_err:.3g}, max_rel_err={validation.max_rel_err:.3g})",
            hint="try fp32, or check ops the converter may approximate (see the log)",
        )
    err = error or ConversionError(message=f"conversion {status}")
    return ConversionOutcome(
        status="failed", validation=validation, error=err, seconds=result.seconds
    ), None


def convert_job(agent: Agent, job: LeasedJob, workdir: Path) -> None:
    """The ``convert`` job handler: convert, validate, upload, report."""
    assert job.conversion is not None and agent.device_id is not None
    device_id, task = agent.device_id, job.conversion
    try:
        cached = agent.local_artifact(job, workdir)
    except Exception as exc:  # report, never die: the lease would only expire
        outcome = ConversionOutcome(
            status="failed",
            error=ConversionError(
                step="download", message=f"could not fetch the source model: {exc}"
            ),
        )
        agent.send(
            f"report of job {job.id}",
            lambda: agent.api.report_conversion(device_id, job.id, outcome),
        )
        return
    if job.artifact_metadata.get("archive"):
        source = cached  # unpacked in the job's workdir: external data files sit beside it
    else:
        source = workdir / f"source{SOURCE_SUFFIX.get(job.model.format, '')}"
        source.symlink_to(cached.resolve())
    agent._on_progress({"phase": "converting", "target": task.target})
    request = ConversionRequest(
        source=str(source),
        target=task.target,
        precision=task.precision,
        input_shapes=task.input_shapes,
        seed=0,
        out_dir=str(workdir / "out"),
        timeout_s=agent.settings.convert_timeout_s,
        memory_mb=agent.settings.convert_memory_mb,
    )
    # a lost lease or SIGTERM stops the conversion
    result = convert_isolated(request, workdir / "run", cancel=agent._cancel)
    outcome, artifact = _outcome(result)
    if agent._cancel.is_set():
        return
    log_path = Path(result.log or workdir / "run" / "convert.log")
    try:
        if log_path.is_file():
            outcome.log_sha256 = agent.api.upload(device_id, job.id, log_path, "log")
        if artifact is not None:
            meta_file = Path(result.artifact.metadata_path if result.artifact else "")
            meta = _read_json(meta_file)
            packed, pack_meta = _pack(artifact, workdir)
            outcome.artifact_metadata = {**meta, **pack_meta}
            if pack_meta and "entry" not in meta:
                outcome.artifact_metadata["entry"] = artifact.name
            elif pack_meta:
                outcome.artifact_metadata["entry"] = f"{artifact.name}/{meta['entry']}"
            outcome.artifact_format = task.target
            outcome.artifact_sha256 = agent.api.upload(device_id, job.id, packed, task.target)
    except Exception as exc:
        outcome = ConversionOutcome(
            status="failed",
            error=ConversionError(step="upload", message=f"uploading the result failed: {exc}"),
            log_sha256=outcome.log_sha256,
        )
    agent.send(
        f"report of job {job.id}", lambda: agent.api.report_conversion(device_id, job.id, outcome)
    )


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def main(settings: Any) -> None:
    """Run a converter worker (``latencylab converter``)."""
    from agents.agent import run_agent

    run_agent(Agent(settings, describe=describe, handlers={"convert": convert_job}))
