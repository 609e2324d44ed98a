"""Parse thermal information: sysfs thermal-zone listings and ``dumpsys thermalservice``.

sysfs: ``/sys/class/thermal/thermal_zoneN/type`` holds the zone's type name and
``.../temp`` its temperature in millidegrees Celsius.  Two listing styles are read:

* a transcript of ``adb shell cat sys/class/thermal/thermal_zoneN/type`` commands, where
  each prompt line names the zone and the next line is its type;
* ``/sys/class/thermal/thermal_zoneN: TYPE`` lines printed by a shell loop.

``dumpsys thermalservice`` (Android 10+) prints ``Thermal Status: N`` and one or more
temperature sections with ``Temperature{mValue=.., mType=.., mName=.., mStatus=..}``
entries.  ``Current temperatures from HAL:`` is the live reading; ``Cached
temperatures:`` is what the service last saw.  The HAL section is preferred when
present, else the cached one; ``source`` says which.  Trailing spaces are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "STATUS_NAMES",
    "TYPE_NAMES",
    "ThermalReading",
    "ThermalServiceDump",
    "millidegrees_to_c",
    "parse_dumpsys_thermalservice",
    "parse_thermal_zone_types",
]

#: android.os.Temperature.TYPE_* (subset that has been stable since Android 10).
TYPE_NAMES = {
    -1: "UNKNOWN", 0: "CPU", 1: "GPU", 2: "BATTERY", 3: "SKIN", 4: "USB_PORT",
    5: "POWER_AMPLIFIER", 6: "BCL_VOLTAGE", 7: "BCL_CURRENT", 8: "BCL_PERCENTAGE", 9: "NPU",
}  # fmt: skip
#: android.os.PowerManager.THERMAL_STATUS_* / Temperature.THROTTLING_*.
STATUS_NAMES = {
    0: "NONE", 1: "LIGHT", 2: "MODERATE", 3: "SEVERE", 4: "CRITICAL", 5: "EMERGENCY",
    6: "SHUTDOWN",
}  # fmt: skip

_ZONE_PROMPT = re.compile(r"thermal_zone(\d+)/type\s*$")
_ZONE_LOOP = re.compile(r"^/?sys/class/thermal/thermal_zone(\d+)(?:/type)?:\s*(.+?)\s*$")
_TEMPERATURE = re.compile(r"Temperature\{(?P<body>[^}]*)\}")
_KV = re.compile(r"(\w+)=([^,]*)")
_SECTIONS = {
    "Cached temperatures:": "cached",
    "Current temperatures from HAL:": "hal",
}


@dataclass(frozen=True)
class ThermalReading:
    name: str
    type: str | None  # zone type (sysfs) or Android type name (dumpsys)
    value_c: float | None = None
    status: int | None = None  # Android throttling severity of this sensor
    zone: int | None = None  # sysfs zone index
    type_id: int | None = None  # Android mType


@dataclass(frozen=True)
class ThermalServiceDump:
    throttling_status: int | None  # "Thermal Status: N"
    throttling_status_name: str | None
    source: str | None  # "hal" or "cached": where ``temperatures`` came from
    temperatures: list[ThermalReading]
    cached: list[ThermalReading] = field(default_factory=list)
    hal: list[ThermalReading] = field(default_factory=list)
    status_override: bool | None = None
    hal_ready: bool | None = None

    @property
    def throttling(self) -> bool:
        return bool(self.throttling_status)


def millidegrees_to_c(text: str) -> float:
    """``/sys/class/thermal/thermal_zoneN/temp`` content (millidegrees C) -> degrees C."""
    value = text.strip()
    if not re.fullmatch(r"-?\d+", value):
        raise ValueError(f"thermal zone temp: expected integer millidegrees, got {text!r}")
    return int(value) / 1000.0


def parse_thermal_zone_types(text: str) -> list[ThermalReading]:
    """Zone index -> type from either listing style; ``value_c`` is None (types only)."""
    zones: list[ThermalReading] = []
    pending: int | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _ZONE_PROMPT.search(line):
            pending = int(m[1])
        elif m := _ZONE_LOOP.match(line):
            zones.append(ThermalReading(f"thermal_zone{m[1]}", m[2], zone=int(m[1])))
        elif pending is not None:
            zones.append(ThermalReading(f"thermal_zone{pending}", line, zone=pending))
            pending = None
        else:
            raise ValueError(f"thermal zones: cannot tell which zone {raw!r} belongs to")
    return zones


def _reading(body: str, line: str) -> ThermalReading:
    kv = {k: v.strip() for k, v in _KV.findall(body)}
    try:
        value = float(kv["mValue"])
        type_id = int(kv["mType"])
        status = int(kv["mStatus"]) if "mStatus" in kv else None
        name = kv["mName"]
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"dumpsys thermalservice: bad Temperature entry ({exc}): {line!r}"
        ) from None
    return ThermalReading(name, TYPE_NAMES.get(type_id, str(type_id)), value, status, None, type_id)


def parse_dumpsys_thermalservice(text: str) -> ThermalServiceDump:
    """Parse ``adb shell dumpsys thermalservice``."""
    sections: dict[str, list[ThermalReading]] = {"cached": [], "hal": []}
    seen: set[str] = set()
    current: str | None = None
    status: int | None = None
    override: bool | None = None
    hal_ready: bool | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        indented = raw[:1].isspace()
        if line in _SECTIONS:
            current = _SECTIONS[line]
            seen.add(current)
        elif m := _TEMPERATURE.search(line):
            if current is not None:
                sections[current].append(_reading(m["body"], raw))
        elif not indented:
            current = None
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Thermal Status" and value.lstrip("-").isdigit():
                status = int(value)
            elif key == "IsStatusOverride":
                override = value == "true"
            elif key == "HAL Ready":
                hal_ready = value == "true"
    if status is None and not seen:
        first = text.strip().splitlines()[:1]
        raise ValueError(f"dumpsys thermalservice: no 'Thermal Status' or temperatures ({first!r})")
    source = "hal" if sections["hal"] else "cached" if sections["cached"] else None
    return ThermalServiceDump(
        throttling_status=status,
        throttling_status_name=STATUS_NAMES.get(status) if status is not None else None,
        source=source,
        temperatures=sections[source] if source else [],
        cached=sections["cached"],
        hal=sections["hal"],
        status_override=override,
        hal_ready=hal_ready,
    )
