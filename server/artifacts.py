"""Content-addressed artifact stores: the interface, and the local-disk default.

Every store files bytes under their sha256. An upload that passes through the coordinator (a
user's model, a table's generated model, an agent's upload to a local-disk store) streams into
a ``PendingFile``: a temporary file in the store's local ``tmp`` directory, hashed as it
arrives and refused the moment it crosses the size limit, so memory stays bounded and temp
space is at most the limit per upload in flight. ``commit()`` hands the finished file to the
store, which files it under its hash (``commit_file``): ``LocalArtifactStore`` moves it to
``<root>/<sha[:2]>/<sha>`` with an atomic rename, so a half-written upload never appears under
a hash; ``S3ArtifactStore`` (``server/s3.py``) uploads it to its content-addressed key. The
inspection of an uploaded model reads that local file (``server/store/models.py``).

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) anywhere on the way -- creating the
temporary file, writing a chunk, the final flush at close, making the hash directory, the
rename -- removes the temporary file and raises ``StorageFull`` (HTTP 507): it is the
server's problem, never the client's.

Stores that hand out presigned URLs (``download_url``, ``upload_ticket``) let agents move the
bytes of their jobs to and from the storage directly; the local store returns none, and the
coordinator serves and receives the bytes itself.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar, Protocol

from starlette.responses import FileResponse, Response, StreamingResponse

from latencylab.errors import ErrorCode
from latencylab.transfers import UploadTicket
from server.errors import ApiError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
CHUNK = 1 << 20
TMP_STALE_S = 3600.0
"""Temporary files and scratch directories untouched this long are leftovers of a crash;
younger ones may belong to another coordinator process sharing the data directory."""
_SHA = re.compile(r"[0-9a-f]{64}")


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the size limit of {limit} bytes")
        self.limit = limit


class StorageFull(ApiError):
    """The server's disk (or quota) is full: 507, the client may retry later."""

    def __init__(self) -> None:
        super().__init__(
            507,
            ErrorCode.insufficient_storage,
            "the server is out of disk space; nothing was stored. Try again once an "
            "administrator has freed space",
        )


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def check_sha256(sha256: str) -> str:
    if not _SHA.fullmatch(sha256):
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    return sha256


@contextlib.contextmanager
def disk_full_is_507() -> Iterator[None]:
    """Turn a full disk inside the block into ``StorageFull``; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise


class Pending(Protocol):
    """Bytes about to be filed under their hash: a ``PendingFile``, or an object an agent
    uploaded to a temporary key of the object store (``server.s3.StagedObject``)."""

    size: int

    @property
    def sha256(self) -> str: ...

    def close(self) -> None: ...

    def commit(self) -> tuple[str, bool]: ...

    def discard(self) -> None: ...


@dataclass
class PendingFile:
    """A file being streamed into the store; ``commit()`` files it under its hash.

    Any failure of a write, the close or the commit removes the temporary file itself.
    """

    store: ArtifactStore
    limit: int
    path: Path
    size: int = 0
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    _fh: BinaryIO | None = None

    def __post_init__(self) -> None:
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadTooLarge(self.limit)
        self._hash.update(chunk)
        if self._fh is None:
            raise ValueError("write to a closed pending file")
        with self._discard_on_error():
            self._fh.write(chunk)

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with self._discard_on_error():
                fh.close()  # flushes the last buffered chunk: may hit a full disk too

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> tuple[str, bool]:
        """File it under its hash; returns ``(sha256, created)``, created False for bytes that
        were stored before. The temporary file is gone afterwards, whatever happened."""
        self.close()
        with self._discard_on_error():
            created = self.store.commit_file(self.path, self.sha256)
        self.discard()  # a duplicate, or the local copy of what went to object storage
        return self.sha256, created

    def discard(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):  # a failing flush: the file goes anyway
                fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @contextlib.contextmanager
    def _discard_on_error(self) -> Iterator[None]:
        try:
            with disk_full_is_507():
                yield
        except BaseException:
            self.discard()
            raise


class ArtifactStore(ABC):
    """Where artifacts live. ``tmp`` is local scratch space (uploads in flight, inspection)."""

    kind: ClassVar[str]

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- writing
    def open_pending(self, limit: int) -> PendingFile:
        with disk_full_is_507():
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        os.close(fd)
        try:
            return PendingFile(store=self, limit=limit, path=Path(name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    @abstractmethod
    def commit_file(self, path: Path, sha256: str) -> bool:
        """File the finished local file ``path`` (whose hash is ``sha256``) under its hash,
        moving or copying it; False when the hash was stored already. The caller removes
        whatever is left at ``path``."""

    def upload_ticket(self, job_id: int, size: int, sha256: str) -> UploadTicket:
        """How an agent uploads a file of a job it holds: through the coordinator, unless the
        store takes the bytes directly (presigned)."""
        return UploadTicket(mode="coordinator")

    def staged_upload(self, job_id: int, upload_id: str, sha256: str, limit: int) -> Pending:
        """The object an agent uploaded with a presigned ticket, verified against
        ``sha256``; only stores that hand out tickets have any."""
        raise ApiError(
            409,
            ErrorCode.conflict,
            "this coordinator stores artifacts on its own disk and issues no presigned "
            "uploads: POST the file to /agents/{device}/jobs/{job}/artifacts",
        )

    # ---------------------------------------------------------------- reading
    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def size(self, sha256: str) -> int | None:
        """The stored size in bytes, or None when the hash is not stored."""

    @abstractmethod
    def local_path(self, sha256: str) -> Path | None:
        """The stored file on this machine's disk, where the store keeps it there."""

    @abstractmethod
    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        """The stored bytes in chunks (for serving through the coordinator)."""

    def download_url(self, sha256: str, filename: str) -> str | None:
        """A URL the caller fetches the bytes from directly (presigned), or None: the
        coordinator serves them itself."""
        return None

    # ---------------------------------------------------------------- removing
    @abstractmethod
    def delete(self, sha256: str) -> int:
        """Remove the stored bytes; their size, or -1 when nothing was stored."""

    def remove(self, sha256: str) -> None:
        self.delete(sha256)

    @abstractmethod
    def stored_before(self, cutoff_ts: float) -> Iterator[str]:
        """Every stored hash last written before ``cutoff_ts`` (a Unix time; for the
        garbage collector's scan for files no row knows)."""

    @contextlib.contextmanager
    def scratch_dir(self, prefix: str) -> Iterator[Path]:
        """A temporary directory under ``tmp`` (unpacking, inspection), removed afterwards;
        a full disk inside it is ``StorageFull``."""
        with disk_full_is_507():
            path = Path(tempfile.mkdtemp(dir=self.tmp, prefix=prefix))
        try:
            with disk_full_is_507():
                yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def clean_tmp(self, stale_s: float = TMP_STALE_S) -> None:
        """Remove leftovers of uploads interrupted by a crash (called at start): temporary
        files and scratch directories untouched for ``stale_s`` seconds. Younger ones may be
        uploads in flight in another process sharing this data directory (``--workers``)."""
        cutoff = time.time() - stale_s
        for p in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if p.stat().st_mtime >= cutoff:
                    continue
                if p.name.startswith("upload-") and p.is_file():
                    p.unlink()
                elif p.is_dir() and p.name.startswith(("inspect-", "scratch-")):
                    shutil.rmtree(p, ignore_errors=True)


class LocalArtifactStore(ArtifactStore):
    """Files at ``<root>/<sha[:2]>/<sha>`` on this machine's disk (the default)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__(root / "tmp")

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def commit_file(self, path: Path, sha256: str) -> bool:
        final = self.path_for(sha256)
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)
        return True

    def exists(self, sha256: str) -> bool:
        try:
            return self.path_for(sha256).is_file()
        except ValueError:
            return False

    def size(self, sha256: str) -> int | None:
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, sha256: str) -> Path | None:
        return self.path_for(sha256) if self.exists(sha256) else None

    def iter_bytes(self, sha256: str) -> Iterator[bytes]:
        with self.path_for(sha256).open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def delete(self, sha256: str) -> int:
        path = self.path_for(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return -1
        return size

    def stored_before(self, cutoff_ts: float) -> Iterator[str]:
        for sub in self.root.iterdir():
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for path in sub.iterdir():
                if _SHA.fullmatch(path.name) and path.name.startswith(sub.name):
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < cutoff_ts:
                            yield path.name


def artifact_response(
    store: ArtifactStore,
    sha256: str,
    *,
    media_type: str,
    filename: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """The stored bytes as a response served by the coordinator (a file on its disk, or
    streamed from object storage in chunks)."""
    path = store.local_path(sha256)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename, headers=headers)
    extra = {"Content-Disposition": f'attachment; filename="{filename}"', **(headers or {})}
    size = store.size(sha256)
    if size is not None:
        extra["Content-Length"] = str(size)
    return StreamingResponse(store.iter_bytes(sha256), media_type=media_type, headers=extra)
