"""The wire types of an upload's check (``server.formats`` asks, ``server.inspect_worker``
answers in the sandbox): light, so the sandboxed process imports nothing of the web app."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from latencylab.errors import ErrorCode

SUPPORTED = (
    "ONNX (.onnx, or a .zip holding one .onnx with its external data), a torch.export "
    "program (.pt2), TFLite (.tflite), CoreML (a zipped .mlpackage), ExecuTorch (.pte)"
)


class ModelRejected(Exception):
    def __init__(self, message: str, status_code: int = 422, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Wire):
    """What the check read: the stored format, the signature, and how the file is stored."""

    format: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    opset: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    artifact_meta: dict[str, Any] = Field(default_factory=dict)


class InspectRequest(_Wire):
    path: str = Field(description="the uploaded file (a local copy)")
    filename: str = Field(description="its name as uploaded: messages say this")
    workdir: str = Field(description="an empty directory to unpack an archive into")
    max_unpacked: int


class InspectResult(_Wire):
    """Exactly one of: the model's ``info``; why it is ``rejected`` (for the uploader, with its
    HTTP status); an OS error of the server's (``os_errno``: a full disk while unpacking)."""

    info: ModelInfo | None = None
    rejected: str | None = None
    status_code: int = 422
    os_errno: int | None = None
