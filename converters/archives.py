"""Checking zip archives before anything is unpacked or loaded: entry count, unpacked size,
compression ratio (zip bombs), unsafe paths and links. Used for ``.pt2`` programs, zipped
``.mlpackage`` directories and ONNX models with external data.

Messages name the archive by ``display_name`` (the uploaded file's name) when given, never by
the path of the temporary copy being checked."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from converters.errors import ConversionInputError

MAX_ENTRIES = 10_000
MAX_RATIO = 100.0


class ArchiveRejected(ConversionInputError):
    """The archive is refused before a byte of it is unpacked."""


def check_zip(
    path: str | Path,
    max_total: int,
    max_entries: int = MAX_ENTRIES,
    max_ratio: float = MAX_RATIO,
    hint: str | None = None,
    display_name: str | None = None,
) -> list[zipfile.ZipInfo]:
    """Refuse zip bombs and path tricks; returns the members."""
    name = display_name or Path(path).name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise ArchiveRejected(f"{name} is not a readable zip archive: {exc}", hint) from exc
    if len(infos) > max_entries:
        raise ArchiveRejected(
            f"{name} has {len(infos)} archive entries (limit {max_entries}): refusing to unpack it",
            hint,
        )
    total = sum(i.file_size for i in infos)
    if total > max_total:
        raise ArchiveRejected(
            f"{name} would unpack to {total / 1024**3:.2f} GiB "
            f"(limit {max_total / 1024**3:.2f} GiB)",
            hint,
        )
    ratio = total / max(sum(i.compress_size for i in infos), 1)
    worst = max((i.file_size / max(i.compress_size, 1) for i in infos), default=0.0)
    if ratio > max_ratio or worst > max_ratio * 10:
        raise ArchiveRejected(
            f"{name} looks like a zip bomb (compression ratio {max(ratio, worst):.0f}:1): "
            "refusing to load it",
            hint,
        )
    for info in infos:
        parts = PurePosixPath(info.filename).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or ":" in info.filename:
            raise ArchiveRejected(f"{name} holds an unsafe path: {info.filename!r}", hint)
        if info.external_attr >> 16 & 0o170000 == 0o120000:
            raise ArchiveRejected(f"{name} holds a symbolic link: {info.filename!r}", hint)
    return infos


def extract(
    path: str | Path, dest: Path, max_total: int, display_name: str | None = None
) -> list[str]:
    """Check, then unpack into ``dest``; returns the member file names."""
    infos = check_zip(path, max_total, display_name=display_name)
    with zipfile.ZipFile(path) as zf:
        zf.extractall(dest)
    return [i.filename for i in infos if not i.is_dir()]
