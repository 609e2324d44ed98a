"""Constrained field types and the strict base of request bodies (pydantic only).

The coordinator stores what requests carry in SQLite or PostgreSQL, so these types refuse,
with a 422 that names the field, what either database would fail on or silently mangle:
ids beyond the 32-bit id columns and other integers beyond 64 bits, NaN and infinities,
NUL characters, JSON nested deeper than ``MAX_JSON_DEPTH``. Request bodies also refuse unknown fields (a typo such as
``min_duraton_s`` is an error, not a default); response models stay tolerant (``extra="ignore"``)
because the SDK and the agents parse them from coordinators of other versions.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

MAX_INT64 = 2**63 - 1
"""The largest integer SQLite and PostgreSQL (BIGINT) store."""
MAX_ID = 2**31 - 1
"""The largest id: id columns are INTEGER, which PostgreSQL keeps in 32 bits."""
MAX_SEED = 2**32 - 1
"""Seeds are 32-bit: every runtime's and NumPy's generators take them."""
MAX_JSON_DEPTH = 32
"""How deeply free-form JSON (metadata, attributes, progress) may nest."""

Id = Annotated[int, Ge(1), Le(MAX_ID)]
"""A database id: 1 to 2^31-1 (what an INTEGER primary key holds on every backend)."""
Offset = Annotated[int, Ge(0), Le(MAX_INT64)]
"""A row count to skip (or any non-negative 64-bit integer)."""
Seed = Annotated[int, Ge(0), Le(MAX_SEED)]


def json_problem(value: Any, root: str = "", max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a decoded JSON value cannot be stored as it is (the first problem, with its path
    below ``root``), or None. Checks nesting depth, NUL characters in strings and keys, and
    non-finite numbers."""
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return f"{path or 'the value'} is nested deeper than {max_depth} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return f"{path or 'the value'} contains a NUL character"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{path or 'the value'} is {item}; only finite numbers are allowed"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or "\x00" in key:
                    return f"a key in {path or 'the object'} contains a NUL character"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _storable_json(value: Any, info: ValidationInfo) -> Any:
    problem = json_problem(value, root=info.field_name or "")
    if problem is not None:
        raise PydanticCustomError("unstorable_json", problem)
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string that goes to the database: no NUL characters (PostgreSQL refuses them)."""
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable_json)]
"""A free-form JSON object that goes to the database (see ``json_problem``)."""
StrMap = Annotated[dict[str, str], AfterValidator(_storable_json)]
"""A string → string map that goes to the database."""


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields and non-finite floats are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
