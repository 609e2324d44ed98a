"""Parse ``adb devices -l``, ``adb shell getprop`` dumps and single-property replies.

``adb devices -l`` prints an optional ``List of devices attached`` header, then one line
per device: ``SERIAL <spaces> STATE key:value key:value ...`` (``usb:``, ``product:``,
``model:``, ``device:``, ``transport_id:``; TCP devices such as ``127.0.0.1:34381`` may
have only ``transport_id:``).  The state is everything between the serial and the first
``key:value`` token, so multi-word states (``no permissions (...)``) survive.

``getprop`` prints ``[key]: [value]`` lines; leading indentation (added by some log
wrappers) is ignored, and a bare ``[...]`` line (a user's elision) is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "AdbDevice",
    "PhoneInfo",
    "parse_adb_devices",
    "parse_getprop",
    "parse_getprop_reply",
    "phone_info",
]

_HEADER = "List of devices attached"
_PROP = re.compile(r"^([a-z_][a-z0-9_]*):(\S*)$")
_GETPROP = re.compile(r"^\s*\[([^\]]*)\]: \[(.*)\]\s*$")
_ELISION = re.compile(r"^\s*\[\s*(?:\.\.\.|…)\s*\]\s*$")
# ro.build.fingerprint: brand/product/device:release/id/incremental:type/tags
_FINGERPRINT = re.compile(r"^[^/]+/[^/]+/[^/:]+:(?P<release>[^/]+)/")


@dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str  # "device", "offline", "unauthorized", ...
    properties: dict[str, str] = field(default_factory=dict)  # product, model, device, ...

    @property
    def transport_id(self) -> int | None:
        value = self.properties.get("transport_id")
        return int(value) if value and value.isdigit() else None

    @property
    def is_tcp(self) -> bool:
        """True for network devices (``host:port`` serials)."""
        return re.fullmatch(r".+:\d+", self.serial) is not None

    @property
    def ready(self) -> bool:
        return self.state == "device"


def parse_adb_devices(text: str) -> list[AdbDevice]:
    """Parse ``adb devices -l`` (or ``adb devices``) output."""
    devices = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == _HEADER or line.startswith("* daemon") or line.startswith("adb "):
            continue
        tokens = line.split()
        if len(tokens) < 2:
            raise ValueError(f"adb devices: expected 'SERIAL STATE ...', got {raw!r}")
        state_parts: list[str] = []
        props: dict[str, str] = {}
        for token in tokens[1:]:
            m = _PROP.match(token)
            if m and state_parts:
                props[m[1]] = m[2]
            elif props:
                raise ValueError(f"adb devices: stray {token!r} after properties in {raw!r}")
            else:
                state_parts.append(token)
        devices.append(AdbDevice(tokens[0], " ".join(state_parts), props))
    return devices


def parse_getprop(text: str) -> dict[str, str]:
    """Parse a ``getprop`` dump into ``{key: value}``."""
    props: dict[str, str] = {}
    for raw in text.splitlines():
        if not raw.strip() or _ELISION.match(raw):
            continue
        m = _GETPROP.match(raw)
        if m is None:
            raise ValueError(f"getprop: expected '[key]: [value]', got {raw!r}")
        props[m[1]] = m[2]
    return props


def parse_getprop_reply(text: str) -> str | None:
    """Value of ``adb shell getprop KEY``: one bare line (``None`` if empty = unset).

    A ``[key]: [value]`` line (a grep'd dump) is accepted too and yields the value.
    """
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    if not lines:
        return None
    if len(lines) > 1:
        raise ValueError(f"getprop reply: expected one line, got {len(lines)}: {text!r}")
    m = _GETPROP.match(lines[0])
    value = m[2] if m else lines[0].strip()
    return value or None


@dataclass(frozen=True)
class PhoneInfo:
    model: str | None
    manufacturer: str | None
    device: str | None
    soc_model: str | None
    soc_manufacturer: str | None
    soc_source: str | None  # which property soc_model came from
    android_version: str | None
    android_version_source: str | None
    sdk_level: int | None
    abi: str | None
    abis: tuple[str, ...]


def _first(props: Mapping[str, str], *keys: str) -> tuple[str | None, str | None]:
    for key in keys:
        value = props.get(key, "").strip()
        if value:
            return value, key
    return None, None


def phone_info(props: Mapping[str, str]) -> PhoneInfo:
    """Summarise a getprop dict.

    SoC: ``ro.soc.model`` (Android 12+), else ``ro.board.platform``, else ``ro.hardware``
    (often a board codename rather than a SoC, hence ``soc_source``).  ``ro.boot.hardware``
    is not used: on Nexus/Pixel it is the device codename (``angler``).
    Android version: ``ro.build.version.release``, else the release field of
    ``ro.build.fingerprint`` (``brand/product/device:RELEASE/id/...``).
    """
    soc, soc_key = _first(props, "ro.soc.model", "ro.board.platform", "ro.hardware")
    version, version_key = _first(props, "ro.build.version.release")
    if version is None:
        for key in ("ro.build.fingerprint", "ro.bootimage.build.fingerprint"):
            m = _FINGERPRINT.match(props.get(key, ""))
            if m:
                version, version_key = m["release"], key
                break
    sdk = props.get("ro.build.version.sdk", "").strip()
    abilist = props.get("ro.product.cpu.abilist", "").strip()
    abi, _ = _first(props, "ro.product.cpu.abi")
    abis = tuple(a for a in abilist.split(",") if a) or ((abi,) if abi else ())
    return PhoneInfo(
        model=_first(props, "ro.product.model", "ro.product.vendor.model")[0],
        manufacturer=_first(props, "ro.product.manufacturer", "ro.product.vendor.manufacturer")[0],
        device=_first(props, "ro.product.device", "ro.build.product")[0],
        soc_model=soc,
        soc_manufacturer=_first(props, "ro.soc.manufacturer")[0],
        soc_source=soc_key,
        android_version=version,
        android_version_source=version_key,
        sdk_level=int(sdk) if sdk.isdigit() else None,
        abi=abi or (abis[0] if abis else None),
        abis=abis,
    )
