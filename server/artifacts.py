"""Content-addressed artifact store on the local file system.

Files live at ``<root>/<sha[:2]>/<sha>``. Writes stream into a temporary file in
``<root>/tmp`` while hashing, then move into place with an atomic rename, so a
half-written upload never appears under a hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the size limit of {limit} bytes")
        self.limit = limit


@dataclass
class PendingFile:
    """A file being streamed into the store; ``commit()`` files it under its hash."""

    store: ArtifactStore
    limit: int
    path: Path
    size: int = 0
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    _fh: object = None

    def __post_init__(self) -> None:
        self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise UploadTooLarge(self.limit)
        self._hash.update(chunk)
        self._fh.write(chunk)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # type: ignore[attr-defined]
            self._fh = None

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
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path, final)
        return self.sha256, True

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


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
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        os.close(fd)
        return PendingFile(store=self, limit=limit, path=Path(name))

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(sha256).unlink()

    def clean_tmp(self) -> None:
        """Remove leftovers of uploads interrupted by a crash (called at start)."""
        for p in self.tmp.glob("upload-*"):
            with contextlib.suppress(OSError):
                p.unlink()
