"""Unpacking uploaded archives safely: entry count, total size, ratio and path checks first."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

MAX_ENTRIES = 10_000
MAX_RATIO = 200.0


class ArchiveRejected(ValueError):
    pass


def check_zip(path: Path, max_total: int) -> list[zipfile.ZipInfo]:
    """Refuse zip bombs and path tricks before a single byte is written."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArchiveRejected(f"not a readable zip archive: {exc}") from exc
    if len(infos) > MAX_ENTRIES:
        raise ArchiveRejected(f"the archive has {len(infos)} entries (limit {MAX_ENTRIES})")
    total = sum(i.file_size for i in infos)
    if total > max_total:
        raise ArchiveRejected(
            f"the archive would unpack to {total / 2**20:.0f} MB (limit {max_total / 2**20:.0f} MB)"
        )
    packed = sum(i.compress_size for i in infos) or 1
    if total / packed > MAX_RATIO:
        raise ArchiveRejected(
            f"the archive looks like a zip bomb (compression ratio {total / packed:.0f}:1)"
        )
    for info in infos:
        parts = PurePosixPath(info.filename).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
            raise ArchiveRejected(f"the archive holds an unsafe path: {info.filename!r}")
        if info.external_attr >> 16 & 0o170000 == 0o120000:
            raise ArchiveRejected(f"the archive holds a symbolic link: {info.filename!r}")
    return infos


def extract(path: Path, dest: Path, max_total: int) -> list[str]:
    """Check, then unpack into ``dest``; returns the member names."""
    infos = check_zip(path, max_total)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(dest)
    return [i.filename for i in infos if not i.is_dir()]
