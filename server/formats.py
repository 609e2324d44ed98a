"""Check an uploaded model file and read its signature -- in a sandbox, never in the
coordinator's own process.

``inspect_upload`` runs ``server.inspect_worker:inspect_file`` through the shared sandbox
(``converters.sandbox.run_sandboxed``): a fresh process whose address space is capped at
``LATENCYLAB_INSPECT_MEMORY_MB`` and which is killed after ``LATENCYLAB_INSPECT_TIMEOUT_S``.
Recognising the format, unpacking an archive, the ONNX parse, the external-data check, the
full ``onnx.checker`` pass, ``torch.export.load``, LiteRT and coremltools all happen there,
so whatever arrives -- a 1 GiB model, a 1 GiB of garbage named ``.onnx`` -- the coordinator's
memory stays flat. Only the signature comes back (an ``InspectResult``).

Every problem raises ``ModelRejected`` with a message meant for the user; messages name the
uploaded file (and the entries inside an archive), never the server's temporary paths. A check
that needs more memory or time than allowed is a 422 with code ``inspection_limit`` that says
which setting to raise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from converters.sandbox import SandboxEnd, SandboxOutcome, run_sandboxed
from latencylab.errors import ErrorCode
from server.artifacts import DISK_FULL_ERRNOS, StorageFull
from server.config import Settings
from server.inspection import InspectRequest, InspectResult, ModelInfo, ModelRejected
from server.model_checks import ModelCheckFailed, check_input_size

log = logging.getLogger("latencylab.server")

ENTRY = "server.inspect_worker:inspect_file"
# The check needs one thread and no credentials: BLAS and malloc arenas would reserve
# address space per thread, and a hostile file must find no secret in its environment.
INSPECT_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
INSPECT_ENV_DROP = ("LATENCYLAB_", "AWS_")


class InspectLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(gt=0, description="address-space limit of the check's process")
    timeout_s: float = Field(gt=0, description="the check's process is killed after this")
    max_unpacked: int = Field(gt=0, description="largest unpacked size of an archive (bytes)")

    @classmethod
    def of(cls, settings: Settings) -> InspectLimits:
        return cls(
            memory_mb=settings.inspect_memory_mb,
            timeout_s=settings.inspect_timeout_s,
            max_unpacked=4 * settings.max_upload_bytes,
        )


def inspect_upload(path: Path, scratch: Path, limits: InspectLimits, filename: str) -> ModelInfo:
    """Check the uploaded file ``path`` (named ``filename`` by the uploader) in the sandbox,
    with ``scratch`` (an empty directory, removed by the caller) for its files."""
    rundir, workdir = scratch / "check", scratch / "files"
    workdir.mkdir()
    request = InspectRequest(
        path=str(path), filename=filename, workdir=str(workdir), max_unpacked=limits.max_unpacked
    )
    outcome = run_sandboxed(
        request, ENTRY, InspectResult, rundir=rundir, timeout_s=limits.timeout_s,
        memory_mb=limits.memory_mb, env=INSPECT_ENV, env_drop=INSPECT_ENV_DROP,
    )  # fmt: skip
    return _model_info(outcome, limits, filename)


def _model_info(
    out: SandboxOutcome[InspectResult], limits: InspectLimits, filename: str
) -> ModelInfo:
    result = out.result
    if result is not None and result.info is not None:
        return result.info
    if result is not None and result.os_errno is not None:
        if result.os_errno in DISK_FULL_ERRNOS:
            raise StorageFull()
        raise ModelRejected(f"could not unpack '{filename}': {os.strerror(result.os_errno)}")
    if result is not None:
        raise ModelRejected(result.rejected or f"'{filename}' was refused", result.status_code)
    setting = f"{limits.memory_mb} MiB, the coordinator's LATENCYLAB_INSPECT_MEMORY_MB"
    if out.end is SandboxEnd.out_of_memory:
        raise ModelRejected(
            f"checking '{filename}' needs more memory than the model check may use ({setting});"
            " nothing was stored",
            422,
            ErrorCode.inspection_limit,
        )
    if out.end is SandboxEnd.timed_out:
        raise ModelRejected(
            f"checking '{filename}' took longer than the model check may take "
            f"({limits.timeout_s:g} s, the coordinator's LATENCYLAB_INSPECT_TIMEOUT_S); "
            "nothing was stored",
            422,
            ErrorCode.inspection_limit,
        )
    if out.end is SandboxEnd.not_started:
        log.error("the model check of %r did not start: %s", filename, out.error)
        raise ModelRejected(
            "the coordinator could not start the model check; try again", 503, ErrorCode.unavailable
        )
    # crashed, raised, invalid_result: details (server paths) go to the log only
    log.warning(
        "the model check of %r ended without a result (%s, %s): %s\n%s",
        filename, out.end, out.how, out.error, out.stderr_tail,
    )  # fmt: skip
    raise ModelRejected(
        f"checking '{filename}' failed (the model reader {out.how}); "
        f"the file may be damaged, or need more memory than the model check may use ({setting})"
    )


def apply_input_shapes(
    inputs: list[dict[str, Any]], shapes: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Fill symbolic dims from ``metadata.input_shapes``; leave a symbolic batch dim (dim 0).

    Any other unknown dimension is an error: we do not guess sizes.
    """
    shapes = shapes or {}
    names = {i["name"] for i in inputs}
    unknown = set(shapes) - names
    if unknown:
        raise ModelRejected(
            f"metadata.input_shapes names {sorted(unknown)}, which are not inputs of the model "
            f"(inputs: {sorted(names)})"
        )
    out = []
    for spec in inputs:
        shape = list(spec["shape"])
        given = shapes.get(spec["name"])
        if given is not None:
            if not isinstance(given, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in given
            ):
                raise ModelRejected(
                    f"metadata.input_shapes['{spec['name']}'] must be a list of positive integers"
                )
            if len(given) != len(shape):
                raise ModelRejected(
                    f"metadata.input_shapes['{spec['name']}'] has rank {len(given)}, "
                    f"the model input has rank {len(shape)} ({shape})"
                )
            for i, (have, want) in enumerate(zip(shape, given, strict=True)):
                if isinstance(have, int) and have != want:
                    raise ModelRejected(
                        f"metadata.input_shapes['{spec['name']}'] dim {i} is {want}, "
                        f"but the model fixes it to {have}"
                    )
            shape = list(given)
        for i, d in enumerate(shape):
            if i > 0 and not isinstance(d, int):
                raise ModelRejected(
                    f"input '{spec['name']}' has a dynamic dimension {i} ({d!r}) with no size: "
                    f"give it in metadata, e.g. "
                    f'{{"input_shapes": {{"{spec["name"]}": [1, 3, 224, 224]}}}}'
                )
        out.append({**spec, "shape": shape})
    try:
        check_input_size(out)
    except ModelCheckFailed as exc:
        raise ModelRejected(str(exc)) from exc
    return out
