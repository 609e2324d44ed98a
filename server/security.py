"""Bearer tokens: generation, hashing, and the device-name scope of agent tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from fnmatch import fnmatchcase

SCOPE_PREFIX = {"admin": "lla", "user": "llu", "agent": "llg"}


def new_token(scope: str) -> str:
    """A fresh random token; the prefix tells scope at a glance (never trusted for it)."""
    return f"{SCOPE_PREFIX[scope]}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """Tokens are 256-bit random, so one SHA-256 is a sound at-rest hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def device_in_scope(patterns: Sequence[str] | None, name: str) -> bool:
    """Whether a token with device scope ``patterns`` (``None``: any name) may register ``name``.

    Patterns are validated by ``latencylab.schemas.TokenCreate`` to hold only name characters
    and the wildcards ``*`` and ``?``; matching is case-sensitive, like device names.
    """
    return patterns is None or any(fnmatchcase(name, p) for p in patterns)
