from __future__ import annotations

from fastapi import APIRouter, status

from latencylab.errors import ErrorCode
from latencylab.fields import Id
from latencylab.schemas import TokenCreate, TokenPublic
from server.deps import AnyToken, CurrentAdmin, SessionDep, StateDep
from server.errors import ApiError
from server.openapi import AUTH, errors
from server.store import tokens as store

router = APIRouter(prefix="/tokens", tags=["auth"])


@router.post(
    "",
    response_model=TokenPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH, **errors(400, 422)},
)
def create_token(body: TokenCreate, session: SessionDep, _: CurrentAdmin) -> TokenPublic:
    """Create an API token (admin only); the secret is returned once and stored hashed.

    ``devices`` (agent tokens only) limits the device names the token may register to those
    names or globs (``pixel-*``); without it the token may register any name."""
    row, plain = store.create_token(session, body.scope, body.name, body.devices)
    return store.token_public(row, plain=plain)


@router.get("", response_model=list[TokenPublic], responses=AUTH)
def list_tokens(session: SessionDep, _: CurrentAdmin) -> list[TokenPublic]:
    """List tokens (never their secrets): scope, device scope, the devices registered with
    each, and when it was revoked."""
    return store.list_public(session)


@router.get("/me", response_model=TokenPublic, responses=errors(401))
def whoami(session: SessionDep, token: AnyToken) -> TokenPublic:
    """The calling token itself (scope, name): a cheap way to check a token works."""
    return store.one_public(session, token)


@router.post(
    "/{token_id}/revoke",
    response_model=TokenPublic,
    responses={**AUTH, **errors(404, 409, 422)},
)
def revoke_token(
    token_id: Id, session: SessionDep, state: StateDep, _: CurrentAdmin
) -> TokenPublic:
    """Revoke a token (admin only): from now on it gets 401 ``token_revoked``. The devices
    registered with it are released (their running jobs go back to the queue), so a new token
    may register those names. Idempotent. The last active admin token cannot be revoked (409):
    create another admin token first."""
    row = store.get_token(session, token_id)
    if row is None:
        raise ApiError(404, ErrorCode.not_found, f"token {token_id} does not exist")
    try:
        store.revoke_token(state.context(session), row)
    except store.LastAdminToken as exc:
        raise ApiError(409, ErrorCode.conflict, str(exc)) from exc
    return store.one_public(session, row)
