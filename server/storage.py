"""Open the artifact store ``Settings`` name: object storage for ``LATENCYLAB_ARTIFACTS_URL``
(``s3://bucket/prefix``, checked by ``Settings``), else the local directory
``DATA_DIR/artifacts``."""

from __future__ import annotations

from server.artifacts import ArtifactStore, LocalArtifactStore
from server.config import Settings
from server.s3 import S3ArtifactStore


def open_store(settings: Settings) -> ArtifactStore:
    if settings.artifacts_url:
        return S3ArtifactStore(settings)
    return LocalArtifactStore(settings.artifacts_dir)
