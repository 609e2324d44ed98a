"""Bearer tokens: generation, hashing and the scope dependency."""

from __future__ import annotations

import hashlib
import secrets

SCOPE_PREFIX = {"admin": "lla", "user": "llu", "agent": "llg"}


def new_token(scope: str) -> str:
    """A fresh random token; the prefix tells scope at a glance (never trusted for it)."""
    return f"{SCOPE_PREFIX[scope]}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random, so one SHA-256 is a sound at-rest hash."""
    return hashlib.sha256(token.encode()).hexdigest()
