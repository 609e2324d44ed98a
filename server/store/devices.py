"""Devices (one per agent-served piece of hardware) and target selectors.

What a selector means is defined once, as terms (``server.queue.terms``): the lease statement
matches them in SQL, and ``can_take`` / ``device_matches`` here in Python for validation and
candidate lists.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ApiToken, Device, Job, utcnow
from latencylab.schemas import DevicePublic
from latencylab.status import JobStatus
from server.queue import statements as sql
from server.queue.lifecycle import held_by
from server.queue.terms import (
    COORDINATOR_HOST,
    SelectorError,
    can_take,
    device_matches,
    parse_selector,
    takeable,
)

__all__ = [
    "COORDINATOR_HOST",
    "SelectorError",
    "can_take",
    "device_matches",
    "device_public",
    "get_device",
    "is_online",
    "list_devices",
    "parse_selector",
]


def is_online(device: Device, offline_after_s: float) -> bool:
    return utcnow() - device.last_seen < timedelta(seconds=offline_after_s)


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.id)))


def get_device(session: Session, device_id: int) -> Device | None:
    return session.get(Device, device_id)


def token_and_device(
    session: Session, token_hash: str, device_id: int
) -> tuple[ApiToken | None, Device | None]:
    """The token row of ``token_hash`` and device ``device_id`` (each None if unknown), in
    one read: what every agent request checks first."""
    params = {"p_hash": token_hash, "p_device": device_id}
    row = session.execute(sql.TOKEN_AND_DEVICE, params).one_or_none()
    if row is None:
        return None, None
    return row[0], row[1]


def queue_depth(session: Session, device_id: int) -> int:
    """Queued jobs this device may take (counted by the database, like a lease matches)."""
    q = select(func.count(Job.id)).where(
        Job.status == JobStatus.queued, takeable(device_id, Job.queue_key_id)
    )
    return int(session.scalar(q) or 0)


def device_public(session: Session, device: Device, offline_after_s: float) -> DevicePublic:
    current = session.scalar(select(Job.id).where(held_by(device.id)))
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
        queue_depth=queue_depth(session, device.id),
    )
