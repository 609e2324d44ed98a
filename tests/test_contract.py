"""The OpenAPI contract, fuzzed: schemathesis sends generated (valid and invalid) requests to
every operation of a live coordinator, on SQLite and on PostgreSQL, and fails on any 5xx, any
status the document does not declare, a body that does not match its declared schema
(``ErrorBody`` for every error) or an undeclared content type.

The coordinator is a private one (a real ``latencylab serve`` subprocess on its own database,
no agent): fuzzing registers devices, creates and revokes tokens and queues work, which must
not leak into the session's shared ``live`` coordinator. Bounded: a fixed seed, a few examples
per operation, about a minute per backend.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from db.engine import make_engine, make_session_factory
from server.app import create_app
from server.config import Settings
from server.store.tokens import create_token
from tests.conftest import (
    PG_URL,
    REPO,
    SERVER_ENV,
    _env,
    _pg_admin_url,
    _stop,
    _wait_for,
    free_port,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
SEED = 20_251_101
MAX_EXAMPLES = 6
REVOKE = "/api/v1/tokens/{token_id}/revoke"


@dataclass
class Server:
    url: str
    admin_token: str
    database_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def fresh_admin(self) -> str:
        """A new admin token, written straight to the database: minting it over HTTP would
        need a token the fuzzed revocations may already have revoked."""
        engine = make_engine(self.database_url)
        try:
            with make_session_factory(engine)() as session:
                _, plain = create_token(session, "admin", "contract")
                session.commit()
        finally:
            engine.dispose()
        return plain


@pytest.fixture(scope="module")
def private_database(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the ``database_url`` backend used by nothing else (dropped afterwards)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('contract') / 'contract.db'}"
        return
    import psycopg

    name = f"latencylab_contract_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_pg_admin_url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def server(private_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("contract-data")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    # Long-polls (lease ?wait_s=) capped at 1 s: a fuzzed wait_s=599 is valid and would
    # otherwise hold its request for the 30 s default cap.
    env = _env(
        {
            **SERVER_ENV,
            "LATENCYLAB_DATABASE_URL": private_database,
            "LATENCYLAB_LEASE_WAIT_MAX_S": "1",
        }
    )
    cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent",
           "--port", str(port), "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for(url, proc, log)
        admin = (data_dir / "admin.token").read_text().strip()
        yield Server(url, admin, private_database)
    finally:
        _stop(proc)
        print(_tail(log))


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    return text[-4000:]


# The document is built in-process at collection (schemathesis parametrizes one test per
# operation from it; its lazy `from_fixture` loader does not run on pytest 9) and checked to
# be exactly what the live coordinator serves before anything is fuzzed.
DOCUMENT = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                # Chains of linked calls would take far more than the minute or two allowed.
                "stateful": {"enabled": False},
            },
        }
    ),
)


def test_every_error_is_an_error_body_and_every_token_route_declares_401() -> None:
    assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
    for path, operations in DOCUMENT["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            for status, response in op["responses"].items():
                if status >= "400":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, where
            assert {"500", "503"} <= set(op["responses"]), where
            if path == "/api/v1/health":
                assert "security" not in op
            else:
                assert op["security"] == [{"HTTPBearer": []}], where
                assert "401" in op["responses"], where


def test_the_served_document_is_the_one_fuzzed(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/api/v1/openapi.json").json() == DOCUMENT


# Revoking is fuzzed on its own, with a fresh token per case: it may revoke the very token
# it is sent with, after which every other operation would only ever see 401.
@schema.exclude(path=REVOKE).parametrize()
def test_every_operation_keeps_its_contract(case: schemathesis.Case, server: Server) -> None:
    case.call_and_validate(base_url=server.url, headers=server.auth, checks=CHECKS)


@schema.include(path=REVOKE).parametrize()
def test_revoking_keeps_its_contract(case: schemathesis.Case, server: Server) -> None:
    token = server.fresh_admin()
    case.call_and_validate(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
    )
