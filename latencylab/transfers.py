"""Wire schemas of an agent's artifact uploads (light imports: pydantic only).

An agent asks for an upload ticket first (``POST /agents/{device}/jobs/{job}/uploads``).
With the coordinator's local-disk store the ticket says ``coordinator``: send the file as a
multipart body to ``POST /agents/{device}/jobs/{job}/artifacts``, as before. With object
storage it carries a presigned ``PUT`` URL to a temporary key: the agent sends the bytes
there (with exactly the ``headers`` given: the storage checks the signed length and
checksum), then finalizes (``POST .../uploads/{upload_id}``); the coordinator verifies the
SHA-256 and files the object under its hash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from latencylab.fields import RequestModel

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest in lowercase hex."""
Format = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.+-]{1,32}$")]
"""An artifact format name: tflite, openvino, coreml, log, ..."""
UploadId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class UploadStart(RequestModel):
    """What the agent is about to upload for a job it holds."""

    format: Format = Field(description="tflite, openvino, coreml, log, ...")
    sha256: Sha256 = Field(description="The file's SHA-256 (checked again by the coordinator)")
    size: int = Field(ge=0, le=2**63 - 1, description="The file's size in bytes")


class UploadTicket(BaseModel):
    """Where to send the bytes (see the module docstring)."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["coordinator", "presigned"] = Field(
        description="coordinator: POST the file to .../artifacts; presigned: PUT it to url"
    )
    upload_id: str | None = Field(None, description="Name this id when finalizing")
    url: str | None = Field(None, description="The presigned PUT URL (no Authorization header)")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers the PUT must carry exactly (signed)"
    )
    expires_in_s: int | None = Field(None, description="The URL is refused after this long")


class UploadFinish(RequestModel):
    """Finalize a presigned upload: the same format and digest as in ``UploadStart``."""

    format: Format
    sha256: Sha256


class StoredArtifact(BaseModel):
    """An artifact the coordinator stored for a job."""

    model_config = ConfigDict(extra="ignore")

    sha256: str
    size: int
    format: str
