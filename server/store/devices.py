"""Devices (one per agent-served piece of hardware) and target selectors."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Device, Job, utcnow
from latencylab.schemas import DevicePublic

COORDINATOR_HOST = socket.gethostname()


class SelectorError(ValueError):
    pass


def parse_selector(selector: str) -> list[tuple[str, str]] | None:
    """``None`` for a plain name or ``local``; else ``[(key, value), ...]`` (comma = and)."""
    selector = selector.strip()
    if not selector:
        raise SelectorError("empty device selector; use 'local', a device name or 'key:value'")
    if ":" not in selector:
        return None
    pairs = []
    for part in selector.split(","):
        key, sep, value = part.partition(":")
        if not sep or not key.strip() or not value.strip():
            raise SelectorError(f"bad selector part {part!r}: expected 'key:value'")
        pairs.append((key.strip().lower(), value.strip()))
    return pairs


def _attr(device: Device, key: str) -> Any:
    if key == "class":
        return device.device_class
    if key == "name":
        return device.name
    if key in (device.attributes or {}):
        return device.attributes[key]
    return (device.info or {}).get(key)


def device_matches(device: Device, selector: str) -> bool:
    pairs = parse_selector(selector)
    if pairs is None:
        if selector.strip() == "local":
            attrs = device.attributes or {}
            return attrs.get("host") == COORDINATOR_HOST or attrs.get("local") in (True, "true")
        return device.name == selector.strip()
    for key, value in pairs:
        if key == "runtime":
            if value not in (device.runtimes or {}):
                return False
            continue
        have = _attr(device, key)
        if have is None or str(have).lower() != value.lower():
            return False
    return True


def can_take(device: Device, selector: str, runtime: str) -> bool:
    return runtime in (device.runtimes or {}) and device_matches(device, selector)


def is_online(device: Device, offline_after_s: float) -> bool:
    return utcnow() - device.last_seen < timedelta(seconds=offline_after_s)


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.id)))


def get_device(session: Session, device_id: int) -> Device | None:
    return session.get(Device, device_id)


def device_public(
    session: Session, device: Device, offline_after_s: float, queued: list[Job] | None = None
) -> DevicePublic:
    if queued is None:
        queued = list(session.scalars(select(Job).where(Job.status == "queued")))
    current = session.scalar(
        select(Job.id).where(Job.device_id == device.id, Job.status == "running")
    )
    return DevicePublic(
        id=device.id,
        name=device.name,
        device_class=device.device_class,
        status="online" if is_online(device, offline_after_s) else "offline",
        runtimes=device.runtimes or {},
        attributes=device.attributes or {},
        info=device.info or {},
        last_seen=device.last_seen,
        current_job=current,
        queue_depth=sum(1 for j in queued if can_take(device, j.device_selector, j.runtime)),
    )
