"""Artifacts on S3-compatible object storage (AWS S3, MinIO, ...), through boto3.

``LATENCYLAB_ARTIFACTS_URL=s3://bucket/prefix``: an artifact lives at
``prefix/<sha[:2]>/<sha>``; agents' uploads land at ``prefix/tmp/job-<id>-<upload id>`` first.

**Uploads through the coordinator** (a user's model, a table's generated models) stream into a
bounded local temporary file while hashing (``server.artifacts.PendingFile``, as with the
local-disk store), then go to their content-addressed key in one managed multipart upload
(8 MiB parts, two at a time: memory stays bounded whatever the size), and the local copy is
removed. Why not multipart to a temporary key while hashing, then a server-side copy? The
inspection of an uploaded model (ONNX checker, zip and ``.mlpackage`` unpacking, ``.pt2`` and
``.tflite`` parsing: ``server/formats.py``) needs the whole file on local disk anyway, so
streaming it to the bucket at the same time would use the same temp space plus a second copy
and a copy request. Temp space: at most ``LATENCYLAB_MAX_UPLOAD_MB`` per upload in flight,
under ``DATA_DIR/artifacts/tmp``; a model already stored (same hash) is not uploaded again.

**Agents move their bytes themselves**, never through the coordinator: a download is a 307 to
a presigned GET, issued only while the caller's device holds a job using the artifact; an
upload is a presigned PUT to a temporary key whose length and SHA-256 checksum are signed
(S3 and MinIO refuse other bytes), then a finalize call: the coordinator streams the object
once to verify its SHA-256 itself (not every S3-compatible server checks the checksum
header), copies it server-side to its content-addressed key and deletes the temporary key.
URLs expire after ``LATENCYLAB_S3_PRESIGN_EXPIRY_S``. Temporary keys an agent never
finalized are removed at start once older than a day.

A storage that cannot be reached or refuses the coordinator's credentials is a 503
``unavailable`` (retry later), never a 500.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from latencylab.errors import ErrorCode
from latencylab.transfers import UploadTicket
from server.artifacts import CHUNK, TMP_STALE_S, ArtifactStore, UploadTooLarge, check_sha256
from server.config import Settings
from server.errors import ApiError

try:  # the `s3` extra; only a coordinator configured with s3:// needs it
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    HAVE_BOTO3 = True
except ImportError:  # pragma: no cover - depends on the installed extras
    HAVE_BOTO3 = False

log = logging.getLogger("latencylab.s3")
STALE_UPLOAD_S = 86400.0
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class ChecksumMismatch(ApiError):
    def __init__(self, sha256: str, actual: str) -> None:
        super().__init__(
            422,
            ErrorCode.checksum_mismatch,
            f"the uploaded object's SHA-256 is {actual}, not {sha256} as announced; it was "
            "deleted. Upload the file again",
        )


def _unavailable(exc: Exception) -> ApiError:
    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
    return ApiError(
        503,
        ErrorCode.unavailable,
        f"the artifact object storage is unavailable ({type(exc).__name__}"
        f"{': ' + code if code else ''}); nothing was changed, retry later",
        headers={"Retry-After": "5"},
    )


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """botocore's failures (unreachable, refused, throttled) become a 503."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise _unavailable(exc) from exc


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket[/prefix] URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


@dataclass
class StagedObject:
    """An object an agent uploaded to a temporary key, its SHA-256 verified by the
    coordinator; ``commit()`` files it under its hash (``server.artifacts.Pending``)."""

    store: S3ArtifactStore
    key: str
    size: int
    digest: str

    @property
    def sha256(self) -> str:
        return self.digest

    def close(self) -> None:
        """Nothing buffered: the bytes are in the bucket already."""

    def commit(self) -> tuple[str, bool]:
        try:
            created = self.store.copy_in(self.key, self.digest)
        finally:
            self.discard()
        return self.digest, created

    def discard(self) -> None:
        self.store.delete_key(self.key)


class S3ArtifactStore(ArtifactStore):
    kind = "s3"

    def __init__(self, settings: Settings) -> None:
        if not HAVE_BOTO3:
            raise SystemExit(
                f"LATENCYLAB_ARTIFACTS_URL is {settings.artifacts_url} but boto3 is not "
                "installed: pip install 'latencylab[s3]'"
            )
        super().__init__(settings.artifacts_dir / "tmp")
        self.bucket, self.prefix = parse_s3_url(str(settings.artifacts_url))
        self.expiry_s = settings.s3_presign_expiry_s
        self.client = self._client(settings, settings.s3_endpoint_url)
        public = settings.s3_public_endpoint_url
        self.signer = self._client(settings, public) if public else self.client
        self.transfer = TransferConfig(
            multipart_threshold=16 * CHUNK,
            multipart_chunksize=8 * CHUNK,
            max_concurrency=2,
            io_chunksize=CHUNK,
        )

    @staticmethod
    def _client(settings: Settings, endpoint: str | None) -> Any:
        secret = settings.s3_secret_access_key
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    # ---------------------------------------------------------------- keys
    def key_for(self, sha256: str) -> str:
        check_sha256(sha256)
        return self._join(f"{sha256[:2]}/{sha256}")

    def _join(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest

    def _tmp_key(self, job_id: int, upload_id: str) -> str:
        return self._join(f"tmp/job-{job_id}-{upload_id}")

    def _head(self, key: str) -> dict[str, Any] | None:
        with storage_errors():
            try:
                head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        return head

    # ---------------------------------------------------------------- writing
    def commit_file(self, path: Path, sha256: str) -> bool:
        key = self.key_for(sha256)
        if self._head(key) is not None:
            return False
        with storage_errors():
            self.client.upload_file(str(path), self.bucket, key, Config=self.transfer)
        return True

    def copy_in(self, tmp_key: str, sha256: str) -> bool:
        key = self.key_for(sha256)
        if self._head(key) is not None:
            return False
        with storage_errors():
            source = {"Bucket": self.bucket, "Key": tmp_key}
            self.client.copy(source, self.bucket, key, Config=self.transfer)
        return True

    def delete_key(self, key: str) -> None:
        with storage_errors():
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def upload_ticket(self, job_id: int, size: int, sha256: str) -> UploadTicket:
        upload_id = secrets.token_hex(16)
        checksum = base64.b64encode(bytes.fromhex(check_sha256(sha256))).decode()
        params = {
            "Bucket": self.bucket,
            "Key": self._tmp_key(job_id, upload_id),
            "ContentLength": size,
            "ChecksumSHA256": checksum,
        }
        with storage_errors():
            url = self.signer.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=self.expiry_s
            )
        return UploadTicket(
            mode="presigned",
            upload_id=upload_id,
            url=url,
            headers={"x-amz-checksum-sha256": checksum},
            expires_in_s=self.expiry_s,
        )

    def staged_upload(self, job_id: int, upload_id: str, sha256: str, limit: int) -> StagedObject:
        key = self._tmp_key(job_id, upload_id)
        head = self._head(key)
        if head is None:
            raise ApiError(
                404,
                ErrorCode.not_found,
                f"upload {upload_id} of job {job_id} is not in the object storage: PUT the "
                "file to the ticket's URL first (a ticket expires; ask for a new one)",
            )
        size = int(head["ContentLength"])
        if size > limit:
            self.delete_key(key)
            raise UploadTooLarge(limit)
        digest = hashlib.sha256()
        with storage_errors():
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            self.delete_key(key)
            raise ChecksumMismatch(sha256, digest.hexdigest())
        return StagedObject(self, key, size, sha256)

    # ---------------------------------------------------------------- reading
    def exists(self, sha256: str) -> bool:
        try:
            return self._head(self.key_for(sha256)) is not None
        except ValueError:
            return False

    def size(self, sha256: str) -> int | None:
        head = self._head(self.key_for(sha256))
        return None if head is None else int(head["ContentLength"])

    def local_path(self, sha256: str) -> Path | None:
        return None

    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        with storage_errors():
            body = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))["Body"]
        with contextlib.closing(body):
            yield from body.iter_chunks(CHUNK)

    def download_url(self, sha256: str, filename: str) -> str | None:
        with storage_errors():
            url: str = self.signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key_for(sha256)},
                ExpiresIn=self.expiry_s,
            )
        return url

    # ---------------------------------------------------------------- removing
    def delete(self, sha256: str) -> int:
        key = self.key_for(sha256)
        head = self._head(key)
        if head is None:
            return -1
        self.delete_key(key)
        return int(head["ContentLength"])

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        with storage_errors():
            pages = self.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def stored_before(self, cutoff_ts: float) -> Iterator[str]:
        for obj in self._objects(self._join("")):
            rest = obj["Key"][len(self._join("")) :].split("/")
            if (
                len(rest) == 2
                and len(rest[0]) == 2
                and rest[1].startswith(rest[0])
                and len(rest[1]) == 64
                and obj["LastModified"].timestamp() < cutoff_ts
            ):
                with contextlib.suppress(ValueError):
                    yield check_sha256(rest[1])

    def clean_tmp(self, stale_s: float = TMP_STALE_S) -> None:
        """The local scratch space as for every store, and agents' uploads never finalized."""
        super().clean_tmp(stale_s)
        cutoff = time.time() - STALE_UPLOAD_S
        try:
            for obj in self._objects(self._join("tmp/")):
                if obj["LastModified"].timestamp() < cutoff:
                    self.delete_key(obj["Key"])
        except ApiError:  # a storage down at start: the next start tries again
            log.warning("could not sweep stale uploads from s3://%s", self.bucket, exc_info=True)
