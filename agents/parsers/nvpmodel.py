"""Parse ``nvpmodel -q`` (Jetson power mode query).

Output is ``NV Power Mode: <name>`` followed by the numeric mode id on its own line.
Run without root, nvpmodel also prints ``NVPM ERROR: ...`` lines (e.g. permission
error 13 on ``emc_iso_cap``); they are collected, not fatal.  ``NVPM WARN`` lines are
collected as warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["NvpModelStatus", "parse_nvpmodel_query"]

_MODE = re.compile(r"^NV Power Mode:\s*(?P<name>.+?)\s*$")
_ID = re.compile(r"^\d+$")
_NVPM = re.compile(r"^NVPM (?P<level>ERROR|ERR|WARN|WARNING)\s*:\s*(?P<msg>.*?)\s*$")


@dataclass(frozen=True)
class NvpModelStatus:
    mode_name: str
    mode_id: int | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_nvpmodel_query(text: str) -> NvpModelStatus:
    """Parse ``nvpmodel -q`` output.  Raises ``ValueError`` if there is no mode line."""
    name: str | None = None
    mode_id: int | None = None
    errors: list[str] = []
    warnings: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _NVPM.match(line):
            (errors if m["level"].startswith("ERR") else warnings).append(m["msg"])
        elif m := _MODE.match(line):
            name = m["name"]
        elif _ID.match(line) and name is not None and mode_id is None:
            mode_id = int(line)
        else:
            raise ValueError(f"nvpmodel -q: unexpected line {raw!r}")
    if name is None:
        raise ValueError(f"nvpmodel -q: no 'NV Power Mode:' line in {text!r}")
    return NvpModelStatus(name, mode_id, errors, warnings)
