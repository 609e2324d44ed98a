"""API tokens: creation (with an optional device scope), lookup, listing, revocation."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiToken, Device, utcnow
from latencylab.schemas import TokenPublic
from server.queue.kinds import JobContext
from server.security import hash_token, new_token
from server.store.bindings import bound_devices, release_device


class LastAdminToken(Exception):
    """Revoking this token would leave no active admin token."""


def create_token(
    session: Session, scope: str, name: str = "", devices: list[str] | None = None
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plaintext (which is not stored)."""
    plain = new_token(scope)
    row = ApiToken(
        name=name or f"{scope} token",
        scope=scope,
        token_hash=hash_token(plain),
        prefix=plain[:8],
        device_scope=list(devices) if devices is not None else None,
    )
    session.add(row)
    session.flush()
    return row, plain


def lookup_token(session: Session, plain: str) -> ApiToken | None:
    """The token row for ``plain``, revoked or not; ``None`` if no such token was issued."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))


def find_token(session: Session, plain: str) -> ApiToken | None:
    """The token row for ``plain`` if it is active (issued and not revoked)."""
    row = lookup_token(session, plain)
    if row is None or row.revoked_at is not None:
        return None
    return row


def get_token(session: Session, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(ctx: JobContext, row: ApiToken) -> ApiToken:
    """Revoke ``row`` at once (idempotent) and release the devices registered with it, so
    their running jobs go back to the queue and a new token may register the names.

    The last active admin token cannot be revoked (``LastAdminToken``): that would lock every
    admin out. Revoking the admin token making the call is allowed while another exists.
    """
    session = ctx.session
    if row.revoked_at is not None:
        return row
    if row.scope == "admin":
        admins = session.scalars(
            select(ApiToken.id)
            .where(ApiToken.scope == "admin", ApiToken.revoked_at.is_(None))
            .with_for_update()
        ).all()
        if set(admins) <= {row.id}:
            raise LastAdminToken(
                f"token {row.id} is the last active admin token; create another admin token "
                "('latencylab token create --scope admin') before revoking this one"
            )
    row.revoked_at = utcnow()
    for device in bound_devices(session, row.id):
        release_device(ctx, device, f"the token of device '{device.name}' was revoked")
    session.flush()
    return row


def token_public(
    row: ApiToken, registered: list[str] | None = None, plain: str | None = None
) -> TokenPublic:
    return TokenPublic(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        devices=list(row.device_scope) if row.device_scope is not None else None,
        registered_devices=registered or [],
        token=plain,
    )


def one_public(session: Session, row: ApiToken, plain: str | None = None) -> TokenPublic:
    return token_public(row, [d.name for d in bound_devices(session, row.id)], plain)


def list_public(session: Session) -> list[TokenPublic]:
    """Every token (never a secret) with the devices registered with it, in two queries."""
    names: dict[int, list[str]] = defaultdict(list)
    for device in session.scalars(
        select(Device).where(Device.token_id.is_not(None)).order_by(Device.id)
    ):
        if device.token_id is not None:
            names[device.token_id].append(device.name)
    return [token_public(t, names.get(t.id)) for t in list_tokens(session)]
