"""The store below the routes: migrations on both backends, selectors, status aggregation."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.engine import make_engine
from db.migrate import upgrade
from db.models import Base, Device
from server.store.benchmarks import aggregate_status
from server.store.devices import COORDINATOR_HOST, SelectorError, device_matches, parse_selector


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path_factory.mktemp('mig') / 'm.db'}"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_match_the_models_on_sqlite(migrated) -> None:  # type: ignore[no-untyped-def]
    with migrated.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert conn.dialect.name == "sqlite"
    with migrated.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgres(postgres_database: str) -> None:
    engine = make_engine(postgres_database)
    try:
        upgrade(engine)  # idempotent: the live server may have migrated this database already
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            tables = set(inspect(conn).get_table_names())
        assert diff == []
        assert {"models", "jobs", "results", "devices", "api_tokens"} <= tables
    finally:
        engine.dispose()


def _device(**kw) -> Device:  # type: ignore[no-untyped-def]
    d = Device(name=kw.pop("name", "pixel-8"), device_class=kw.pop("cls", "phone"))
    d.runtimes = kw.pop("runtimes", {"tflite": "2.3"})
    d.attributes = kw.pop("attributes", {"soc": "Tensor G3", "host": "lab-1"})
    d.info = kw.pop("info", {"cpu_model": "Cortex-X3"})
    return d


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("pixel-8", True),
        ("pixel-9", False),
        ("class:phone", True),
        ("class:GPU", False),
        ("soc:tensor g3", True),
        ("runtime:tflite", True),
        ("runtime:tensorrt", False),
        ("class:phone,runtime:tflite", True),
        ("class:phone,runtime:coreml", False),
        ("cpu_model:Cortex-X3", True),
        ("local", False),
    ],
)
def test_selectors(selector: str, expected: bool) -> None:
    assert device_matches(_device(), selector) is expected


def test_local_selects_devices_on_the_coordinator_host_or_flagged_local() -> None:
    assert device_matches(_device(attributes={"host": COORDINATOR_HOST}), "local")
    assert device_matches(_device(attributes={"local": "true"}), "local")


@pytest.mark.parametrize("bad", ["", " ", "class:", ":gpu", "a:b,c"])
def test_bad_selectors(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(bad)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["queued", "queued"], "queued"),
        (["running", "queued"], "running"),
        (["succeeded", "queued"], "running"),
        (["succeeded", "succeeded"], "succeeded"),
        (["failed", "failed"], "failed"),
        (["succeeded", "failed"], "partial"),
    ],
)
def test_benchmark_status(statuses: list[str], expected: str) -> None:
    assert aggregate_status(statuses) == expected
