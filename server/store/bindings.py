"""Which token holds which device: registration, the device scope of agent tokens, release.

A device name belongs to the token that registered it first. Only that token may register it
again (an agent restarting); any other token is refused until an admin releases the device
or revokes the token holding it. Releasing gives the device's running jobs back to the queue.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import ApiToken, Device
from latencylab.schemas import DeviceRegister
from server.queue import lifecycle
from server.queue.kinds import JobContext
from server.queue.terms import write_device_terms
from server.security import device_in_scope


class DeviceTaken(Exception):
    """The device name is registered with another (active) token."""


class DeviceOutOfScope(Exception):
    """The token's device scope does not admit this device name."""


def _holds(session: Session, device: Device, token: ApiToken) -> bool:
    """Whether ``device`` may be (re)registered by ``token``: it is free, bound to ``token``,
    or bound to a token that has since been revoked."""
    if device.token_id is None or device.token_id == token.id:
        return True
    holder = session.get(ApiToken, device.token_id)
    return holder is None or holder.revoked_at is not None


def _taken_message(device: Device) -> str:
    return (
        f"device '{device.name}' is registered with another token; only that token may "
        f"register it again. An admin can free it with 'latencylab token unbind {device.id}' "
        f"(POST /api/v1/devices/{device.id}/release) or by revoking the token that holds it "
        "('latencylab token list' shows which), then register again"
    )


def _out_of_scope_message(token: ApiToken, name: str) -> str:
    allowed = ", ".join(repr(p) for p in token.device_scope or [])
    return (
        f"token {token.id} ('{token.name}') may register only devices matching {allowed}; "
        f"'{name}' does not match. Use a matching name or ask an admin for a token scoped to it "
        "('latencylab token create --scope agent --device NAME')"
    )


def register_device(ctx: JobContext, body: DeviceRegister, token: ApiToken) -> Device:
    """Create or update the device of that name for ``token`` (and the terms its selectors
    match, ``server.queue.terms``); a re-registering agent frees its old jobs. Raises
    ``DeviceOutOfScope`` or ``DeviceTaken``."""
    session = ctx.session
    if not device_in_scope(token.device_scope, body.name):
        raise DeviceOutOfScope(_out_of_scope_message(token, body.name))
    query = select(Device).where(Device.name == body.name).with_for_update()
    device = session.scalar(query)
    if device is None:
        device = Device(name=body.name, device_class=body.device_class, token_id=token.id)
        session.add(device)
        try:
            session.flush()
        except IntegrityError as exc:  # another request registered the name a moment ago
            raise DeviceTaken(
                f"device '{body.name}' was registered by another request at the same moment; "
                "register again (it succeeds if that was your token)"
            ) from exc
    elif not _holds(session, device, token):
        raise DeviceTaken(_taken_message(device))
    device.device_class = body.device_class
    device.runtimes = dict(body.runtimes)
    device.attributes = dict(body.attributes)
    device.info = dict(body.info)
    device.token_id = token.id
    device.last_seen = ctx.now()
    write_device_terms(session, device)
    # An agent that (re)starts holds nothing: whatever it held before goes back to the queue.
    why = f"agent for device '{device.name}' restarted while holding the job"
    lifecycle.release_device(ctx, device, why)
    return device


def release_device(ctx: JobContext, device: Device, reason: str) -> Device:
    """Unbind ``device`` from its token (any token may then register the name); its running
    jobs go back to the queue. Releasing a free device changes nothing."""
    if device.token_id is not None:
        device.token_id = None
        ctx.session.flush()
        lifecycle.release_device(ctx, device, reason)
    return device


def bound_devices(session: Session, token_id: int) -> list[Device]:
    return list(
        session.scalars(select(Device).where(Device.token_id == token_id).order_by(Device.id))
    )
