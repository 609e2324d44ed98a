"""Content-addressed artifact store on the local file system.

Files live at ``<root>/<sha[:2]>/<sha>``. Writes stream into a temporary file in
``<root>/tmp`` while hashing, then move into place with an atomic rename, so a
half-written upload never appears under a hash.

A full disk (``ENOSPC``, or ``EDQUOT`` for a quota) anywhere on the way -- creating the
temporary file, writing a chunk, the final flush at close, making the hash directory, the
rename -- removes the temporary file and raises ``StorageFull`` (HTTP 507): it is the
server's problem, never the client's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from latencylab.errors import ErrorCode
from server.errors import ApiError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


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


@contextlib.contextmanager
def disk_full_is_507() -> Iterator[None]:
    """Turn a full disk inside the block into ``StorageFull``; other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise


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
        """Move into place; returns ``(sha256, created)``; created is False for a duplicate."""
        self.close()
        final = self.store.path_for(self.sha256)
        if final.exists():
            self.discard()
            return self.sha256, False
        with self._discard_on_error():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, final)
        return self.sha256, True

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


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        try:
            return self.path_for(sha256).is_file()
        except ValueError:
            return False

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

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(sha256).unlink()

    def clean_tmp(self) -> None:
        """Remove leftovers of uploads interrupted by a crash (called at start)."""
        for p in self.tmp.iterdir():
            if p.name.startswith("upload-"):
                with contextlib.suppress(OSError):
                    p.unlink()
            elif p.is_dir() and p.name.startswith(("inspect-", "scratch-")):
                shutil.rmtree(p, ignore_errors=True)
