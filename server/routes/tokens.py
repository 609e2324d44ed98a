from __future__ import annotations

from fastapi import APIRouter, status

from latencylab.schemas import TokenCreate, TokenPublic
from server.deps import AnyToken, CurrentAdmin, SessionDep
from server.store import tokens as store

router = APIRouter(prefix="/tokens", tags=["auth"])


@router.post("", response_model=TokenPublic, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, session: SessionDep, _: CurrentAdmin) -> TokenPublic:
    """Create an API token (admin only); the secret is returned once and stored hashed."""
    row, plain = store.create_token(session, body.scope, body.name)
    return TokenPublic(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        token=plain,
    )


@router.get("", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, _: CurrentAdmin) -> list[TokenPublic]:
    """List tokens (never their secrets)."""
    return [
        TokenPublic(id=t.id, name=t.name, scope=t.scope, prefix=t.prefix, created_at=t.created_at)
        for t in store.list_tokens(session)
    ]


@router.get("/me", response_model=TokenPublic)
def whoami(token: AnyToken) -> TokenPublic:
    """The calling token itself (scope, name): a cheap way to check a token works."""
    return TokenPublic(
        id=token.id,
        name=token.name,
        scope=token.scope,
        prefix=token.prefix,
        created_at=token.created_at,
    )
