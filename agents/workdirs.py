"""Per-job work directories that a killed agent cannot leak, safe where agents share a work dir.

A job's scratch space is ``<work_dir>/job-<id>-<attempt>/``; beside it,
``job-<id>-<attempt>.lock`` is ``flock``-ed by the agent from before the directory exists
until after it is removed. The kernel drops a flock when its holder dies, however it dies,
so a job directory whose lock anyone can take belongs to nobody: ``sweep`` removes those (an
agent does at start and after each job). A directory whose lock is held belongs to a live
agent (the converter worker, another phone of an Android host, a second agent pointed at the
same data dir) and is left alone. Nothing but ``job-*`` entries is ever touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from types import TracebackType

PREFIX = "job-"
LOCK_SUFFIX = ".lock"


def _lock(path: Path) -> int | None:
    """A descriptor holding ``flock(LOCK_EX)`` on ``path`` (created if need be), or None when
    someone else holds it. A lock file its last holder removed meanwhile is not a lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked (and maybe created anew) by its holder: lock the current one


def _remove(path: Path, lock_path: Path, fd: int) -> None:
    """Remove a job directory and its lock file, then let go of the lock (in that order)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
    finally:
        os.close(fd)


class JobDir:
    """``with JobDir(work_dir, job_id, attempt) as path:`` a fresh, locked, private directory
    for one job, removed on leaving the block. Should a live agent hold that name (a second
    coordinator's job of the same id), a ``-2``, ``-3``... suffix is used instead."""

    def __init__(self, work_dir: Path, job_id: int, attempt: int) -> None:
        self.work_dir = Path(work_dir)
        self.base = f"{PREFIX}{job_id}-{attempt}"
        self.path: Path | None = None
        self._lock_path: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            name = self.base if n == 1 else f"{self.base}-{n}"
            lock_path = self.work_dir / (name + LOCK_SUFFIX)
            fd = _lock(lock_path)
            if fd is None:
                continue
            path = self.work_dir / name
            shutil.rmtree(path, ignore_errors=True)  # a leftover under a name we now own
            try:
                path.mkdir()
            except BaseException:
                _remove(path, lock_path, fd)
                raise
            self.path, self._lock_path, self._fd = path, lock_path, fd
            return path
        raise RuntimeError(f"no free job directory {self.base}-N under {self.work_dir}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.path is not None and self._lock_path is not None and self._fd is not None:
            _remove(self.path, self._lock_path, self._fd)
        self.path = self._lock_path = self._fd = None


def sweep(work_dir: Path) -> list[Path]:
    """Remove every job directory under ``work_dir`` whose lock nobody holds (left by an
    agent that was killed); returns the directories removed."""
    try:
        entries = [e.name for e in Path(work_dir).iterdir() if e.name.startswith(PREFIX)]
    except FileNotFoundError:
        return []
    removed = []
    for name in sorted({e.removesuffix(LOCK_SUFFIX) for e in entries}):
        lock_path = Path(work_dir) / (name + LOCK_SUFFIX)
        fd = _lock(lock_path)
        if fd is None:
            continue  # a live agent's
        path = Path(work_dir) / name
        existed = path.is_dir() and not path.is_symlink()
        _remove(path, lock_path, fd)
        if existed:
            removed.append(path)
    return removed
