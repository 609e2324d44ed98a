"""Parse ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]`` output.

With a header, nvidia-smi names each column by its canonical field name plus a unit in
brackets (``clocks.current.sm [MHz]``), even when the query used an alias
(``clocks.sm``).  Values carry a unit suffix (``83.92 W``, ``1320 MHz``, ``26 %``)
unless ``nounits`` was given.  Fields are separated by ``", "``.

Returned rows are plain dicts keyed by the caller's query names when ``fields`` is
given (so ``row["clocks.sm"]`` works), else by the canonical names from the header.
Values are typed: units stripped, ``int`` or ``float`` where numeric, ``None`` for
``N/A`` / ``[N/A]`` / ``[Not Supported]`` and similar, ``str`` for text fields such as
``name`` and ``driver_version`` (never converted: ``535.54`` is not a number).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence

__all__ = ["ALIASES", "canonical_field", "parse_query_gpu"]

#: Query alias -> canonical name as printed in the CSV header (see --help-query-gpu).
ALIASES: dict[str, str] = {
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_serial": "serial",
    "gpu_bus_id": "pci.bus_id",
    "clocks.gr": "clocks.current.graphics",
    "clocks.sm": "clocks.current.sm",
    "clocks.mem": "clocks.current.memory",
    "clocks.video": "clocks.current.video",
    "clocks.max.gr": "clocks.max.graphics",
    "clocks.max.mem": "clocks.max.memory",
    "clocks.applications.gr": "clocks.applications.graphics",
    "clocks.applications.mem": "clocks.applications.memory",
    "clocks.default_applications.gr": "clocks.default_applications.graphics",
    "clocks.default_applications.mem": "clocks.default_applications.memory",
}
#: Fields whose values are text even when they look numeric.
TEXT_FIELDS = frozenset(
    {"name", "driver_version", "vbios_version", "uuid", "serial", "pci.bus_id", "pstate"}
)
_UNITS = ("MHz", "MiB", "W", "%", "C", "KiB", "GiB", "B", "s", "us", "ms")
_MISSING = re.compile(r"^\[?(?:N/A|Not Supported|Unknown Error|Insufficient Permissions)\]?$")
_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+\.\d*$")
_HEADER_COL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)(?: \[(?P<unit>[^\]]+)\])?$")

Value = int | float | str | None


def canonical_field(name: str) -> str:
    """``clocks.sm`` -> ``clocks.current.sm``; header text ``power.draw [W]`` -> ``power.draw``."""
    m = _HEADER_COL.match(name.strip())
    base = m["name"] if m else name.strip()
    return ALIASES.get(base, base)


def _convert(field_name: str, raw: str) -> Value:
    text = raw.strip()
    if _MISSING.match(text):
        return None
    if field_name in TEXT_FIELDS:
        return text
    for unit in _UNITS:
        if text.endswith(" " + unit):
            text = text[: -len(unit) - 1]
            break
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text  # enum-like values such as "Enabled", "Default"


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [[cell.strip() for cell in row] for row in csv.reader(lines, skipinitialspace=True)]


def parse_query_gpu(
    text: str, fields: Sequence[str] | None = None, *, header: bool = True
) -> list[dict[str, Value]]:
    """Parse query-gpu CSV output into one dict per GPU (or per sample in loop mode).

    ``header=False`` is for ``--format=csv,noheader[,nounits]``; ``fields`` is then
    required.  With a header and ``fields``, the header must name the same fields
    (aliases allowed) in the same order, else ``ValueError``.
    """
    rows = _rows(text)
    if header:
        if not rows:
            raise ValueError("nvidia-smi: empty output, expected a CSV header line")
        columns = [canonical_field(c) for c in rows[0]]
        rows = rows[1:]
        if fields is not None:
            wanted = [canonical_field(f) for f in fields]
            if wanted != columns:
                raise ValueError(
                    f"nvidia-smi: header {columns} does not match query {list(fields)}"
                )
            keys = list(fields)
        else:
            keys = columns
    else:
        if fields is None:
            raise ValueError("nvidia-smi: noheader output needs the query field names")
        keys, columns = list(fields), [canonical_field(f) for f in fields]
    out = []
    for row in rows:
        line = ", ".join(row)
        if len(row) != len(keys):
            raise ValueError(f"nvidia-smi: {len(row)} values for {len(keys)} fields: {line!r}")
        out.append(
            {key: _convert(col, raw) for key, col, raw in zip(keys, columns, row, strict=True)}
        )
    return out
