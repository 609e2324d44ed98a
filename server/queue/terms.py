"""Device selectors as terms: the one definition of "this device may take this job".

A job's selector and runtime become a set of ``(key, value)`` terms the device must offer;
a device offers the terms of its name, class, runtimes, attributes and info. A device may
take a job iff it offers every term of the job's queue key. The lease statement evaluates
exactly this in SQL (``eligible_keys``); ``can_take`` evaluates it in Python for the same
sets, so validation, candidate lists and leasing never disagree.

Selector semantics (docs/agents.md, "Device selectors"):

* ``local``: a device on the coordinator's host (attribute ``host``), or registered with
  attribute ``local`` = true;
* a plain name: the device of exactly that name;
* ``key:value,...``: every pair must match; ``runtime:X`` means the device offers runtime X
  (exact), any other key an attribute, then an info field, compared case-insensitively;
  ``class`` and ``name`` are the device's own.

Keys of the two special terms contain ``:``, which no ``key:value`` pair's key can.
"""

from __future__ import annotations

import socket
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Device
from db.queue import TERM_LEN, DeviceTerm, QueueKey, QueueKeyTerm

COORDINATOR_HOST = socket.gethostname()
LOCAL = (":local", "true")
NAME = ":name"
Term = tuple[str, str]


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


def selector_terms(selector: str) -> frozenset[Term]:
    """What a device must offer to match ``selector`` (``SelectorError`` if malformed)."""
    pairs = parse_selector(selector)
    if pairs is None:
        name = selector.strip()
        return frozenset({LOCAL} if name == "local" else {(NAME, name)})
    return frozenset((k, v if k == "runtime" else v.lower()) for k, v in pairs)


def job_terms(selector: str, runtime: str) -> frozenset[Term]:
    """What a device must offer to take a job: its selector's terms and its runtime."""
    return selector_terms(selector) | {("runtime", runtime)}


def _fits(key: str, value: str) -> bool:
    """Whether a selector could ever name this term (long or comma values cannot)."""
    return 0 < len(key) <= TERM_LEN and 0 < len(value) <= TERM_LEN and "," not in value


def device_terms(device: Device, coordinator_host: str = COORDINATOR_HOST) -> frozenset[Term]:
    """Every term ``device`` offers (what its selectors may match)."""
    attrs: dict[str, Any] = device.attributes or {}
    info: dict[str, Any] = device.info or {}
    terms: set[Term] = {(NAME, device.name), ("name", device.name.lower())}
    terms.add(("class", str(device.device_class).lower()))
    terms.update(("runtime", r) for r in device.runtimes or {})
    if attrs.get("host") == coordinator_host or attrs.get("local") in (True, "true"):
        terms.add(LOCAL)
    for key in {*info, *attrs}:  # an attribute shadows the info field of the same name
        if key in ("class", "name", "runtime") or ":" in key:
            continue
        value = attrs[key] if key in attrs else info[key]
        if value is not None:
            terms.add((key, str(value).lower()))
    return frozenset((k, v) for k, v in terms if _fits(k, v))


def can_take(device: Device, selector: str, runtime: str) -> bool:
    return job_terms(selector, runtime) <= device_terms(device)


def device_matches(device: Device, selector: str) -> bool:
    return selector_terms(selector) <= device_terms(device)


# ------------------------------------------------------------------ stored terms
def write_device_terms(session: Session, device: Device) -> None:
    """Replace the stored terms of ``device`` (at registration, in its transaction)."""
    session.flush()
    session.query(DeviceTerm).filter(DeviceTerm.device_id == device.id).delete(
        synchronize_session=False
    )
    session.add_all(
        DeviceTerm(device_id=device.id, key=k, value=v) for k, v in device_terms(device)
    )
    session.flush()


def queue_key(session: Session, selector: str, runtime: str) -> int:
    """The id of the queue key of (selector, runtime), created with its terms on first use."""
    found = session.scalar(
        select(QueueKey.id).where(QueueKey.selector == selector, QueueKey.runtime == runtime)
    )
    if found is not None:
        return found
    terms = job_terms(selector, runtime)
    try:
        with session.begin_nested():  # a concurrent enqueue may create the same key
            key = QueueKey(selector=selector, runtime=runtime)
            session.add(key)
            session.flush()
            session.add_all(QueueKeyTerm(queue_key_id=key.id, key=k, value=v) for k, v in terms)
            session.flush()
            return key.id
    except IntegrityError:
        existing = session.scalar(
            select(QueueKey.id).where(QueueKey.selector == selector, QueueKey.runtime == runtime)
        )
        assert existing is not None
        return existing


def eligible_keys(device_id: int | ColumnElement[int]) -> Any:
    """The queue keys whose every term ``device_id`` (a value or a bound parameter) offers
    (a subquery of key ids)."""
    missing = exists().where(
        QueueKeyTerm.queue_key_id == QueueKey.id,
        ~exists().where(
            DeviceTerm.device_id == device_id,
            DeviceTerm.key == QueueKeyTerm.key,
            DeviceTerm.value == QueueKeyTerm.value,
        ),
    )
    return select(QueueKey.id).where(~missing)


def takeable(device_id: int | ColumnElement[int], key_column: Any) -> ColumnElement[bool]:
    """``key_column`` (a jobs.queue_key_id) names a key ``device_id`` may take."""
    return and_(key_column.is_not(None), key_column.in_(eligible_keys(device_id)))
