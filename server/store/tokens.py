"""API tokens."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiToken
from server.security import hash_token, new_token


def create_token(session: Session, scope: str, name: str = "") -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plaintext (which is not stored)."""
    plain = new_token(scope)
    row = ApiToken(
        name=name or f"{scope} token", scope=scope, token_hash=hash_token(plain), prefix=plain[:8]
    )
    session.add(row)
    session.flush()
    return row, plain


def find_token(session: Session, plain: str) -> ApiToken | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plain)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
