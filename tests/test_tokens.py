"""Tokens and device bindings: a device name belongs to the token that registered it, tokens
are revoked at once, agent tokens can be scoped to device names.

The hijack repro and the agent-facing flows go through real HTTP to the ``live`` coordinator
(SQLite and PostgreSQL); the last-admin rule and the 0003 -> 0004 migration run on a private
database per backend, since they need a server nobody else shares.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from db.engine import make_engine
from db.migrate import upgrade
from server.app import create_app
from server.config import Settings
from server.security import hash_token
from server.serve import agent_token
from tests.conftest import PG_URL, Live, _env, _pg_admin_url, cli

FAILED = {"status": "failed", "error": "stopped by the test"}


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _new_token(admin: httpx.Client, scope: str, **extra: Any) -> tuple[int, str]:
    r = admin.post("/tokens", json={"scope": scope, "name": f"{scope}-{_uid()}", **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), str(r.json()["token"])


def _register(http: httpx.Client, name: str) -> httpx.Response:
    return http.post(
        "/agents/register",
        json={"name": name, "class": "cpu", "runtimes": {"onnxruntime": "1.0"}},
    )


def _queue(live: Live, model: Path, device: str) -> int:
    with live.http(live.user_token) as c:
        m = c.post("/models", files={"file": ("mlp.onnx", model.read_bytes())})
        assert m.status_code == 201, m.text
        target = {"runtime": "onnxruntime", "device": device}
        r = c.post("/benchmarks", json={"model_id": m.json()["id"], "targets": [target]})
        assert r.status_code == 202, r.text
        return int(r.json()["jobs"][0]["id"])


def _job(live: Live, job_id: int) -> dict[str, Any]:
    with live.http(live.user_token) as c:
        r = c.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())


def _token_row(admin: httpx.Client, token_id: int) -> dict[str, Any]:
    rows = {t["id"]: t for t in admin.get("/tokens").json()}
    return dict(rows[token_id])


def test_another_token_cannot_take_a_registered_device(
    live: Live, model_files: dict[str, Path]
) -> None:
    """The hijack: token B registering token A's device name is refused; A keeps device and job."""
    victim = f"victim-{_uid()}"
    with live.http(live.admin_token) as admin:
        a_id, a_tok = _new_token(admin, "agent")
        b_id, b_tok = _new_token(admin, "agent")
        with live.http(a_tok) as a, live.http(b_tok) as b:
            r = _register(a, victim)
            assert r.status_code == 200, r.text
            device_id = r.json()["id"]
            job_id = _queue(live, model_files["mlp"], victim)
            leased = a.post(f"/agents/{device_id}/lease")
            assert leased.status_code == 200 and leased.json()["id"] == job_id, leased.text

            hijack = _register(b, victim)
            assert hijack.status_code == 409, hijack.text
            body = hijack.json()
            assert body["code"] == "device_taken"
            assert f"device '{victim}' is registered with another token" in body["detail"]
            assert f"POST /api/v1/devices/{device_id}/release" in body["detail"]

            # A keeps the device and its job; B gets nothing of it.
            beat = a.post(f"/agents/{device_id}/heartbeat", json={"job_id": job_id})
            assert beat.status_code == 200 and beat.json() == {"keep": True}, beat.text
            job = _job(live, job_id)
            assert job["status"] == "running" and job["attempts"] == 1, job
            assert b.post(f"/agents/{device_id}/lease").status_code == 403
            assert b.post(f"/agents/{device_id}/heartbeat", json={}).status_code == 403
            assert _token_row(admin, a_id)["registered_devices"] == [victim]
            assert _token_row(admin, b_id)["registered_devices"] == []

            # A itself may register again (an agent restarting): same device, job freed.
            again = _register(a, victim)
            assert again.status_code == 200 and again.json()["id"] == device_id
            assert _job(live, job_id)["status"] == "queued"
            leased = a.post(f"/agents/{device_id}/lease")
            assert leased.status_code == 200 and leased.json()["id"] == job_id
            done = a.post(f"/agents/{device_id}/jobs/{job_id}/report", json={"result": FAILED})
            assert done.status_code == 201, done.text


def test_admin_release_lets_another_token_register(
    live: Live, model_files: dict[str, Path]
) -> None:
    name = f"moved-{_uid()}"
    with live.http(live.admin_token) as admin:
        _, a_tok = _new_token(admin, "agent")
        b_id, b_tok = _new_token(admin, "agent")
        with live.http(a_tok) as a, live.http(b_tok) as b, live.http(live.user_token) as user:
            device_id = _register(a, name).json()["id"]
            job_id = _queue(live, model_files["mlp"], name)
            assert a.post(f"/agents/{device_id}/lease").json()["id"] == job_id
            assert _register(b, name).status_code == 409

            # Only an admin may release a device.
            refused = user.post(f"/devices/{device_id}/release")
            assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
            assert a.post(f"/devices/{device_id}/release").status_code == 403
            missing = admin.post("/devices/999999999/release")
            assert missing.status_code == 404 and missing.json()["code"] == "not_found"

            r = admin.post(f"/devices/{device_id}/release")
            assert r.status_code == 200 and r.json()["name"] == name, r.text
            assert admin.post(f"/devices/{device_id}/release").status_code == 200  # idempotent
            job = _job(live, job_id)
            assert job["status"] == "queued" and "released by an admin" in job["error"], job
            # The old agent lost the device: its next heartbeat is refused.
            assert a.post(f"/agents/{device_id}/heartbeat", json={}).status_code == 403

            taken = _register(b, name)
            assert taken.status_code == 200 and taken.json()["id"] == device_id, taken.text
            assert _token_row(admin, b_id)["registered_devices"] == [name]
            assert _register(a, name).status_code == 409  # now A is the other token
            leased = b.post(f"/agents/{device_id}/lease")
            assert leased.status_code == 200 and leased.json()["id"] == job_id
            done = b.post(f"/agents/{device_id}/jobs/{job_id}/report", json={"result": FAILED})
            assert done.status_code == 201, done.text


def test_revoked_token_is_refused_at_once(live: Live) -> None:
    with live.http(live.admin_token) as admin:
        user_id, user_tok = _new_token(admin, "user")
        with live.http(user_tok) as user:
            assert user.get("/models").status_code == 200
            r = admin.post(f"/tokens/{user_id}/revoke")
            assert r.status_code == 200, r.text
            revoked_at = r.json()["revoked_at"]
            assert revoked_at is not None
            refused = user.get("/models")
            assert refused.status_code == 401, refused.text
            assert refused.json()["code"] == "token_revoked"
            assert refused.headers["www-authenticate"] == "Bearer"
            assert f"token {user_id}" in refused.json()["detail"]
            assert user.get("/tokens/me").json()["code"] == "token_revoked"
        again = admin.post(f"/tokens/{user_id}/revoke")  # idempotent: the first time stays
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked_at
        assert _token_row(admin, user_id)["revoked_at"] == revoked_at
        missing = admin.post("/tokens/999999999/revoke")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    with live.http(live.user_token) as user:
        r = user.post(f"/tokens/{user_id}/revoke")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
    # Unknown and missing tokens keep their own codes.
    with live.http(f"llu_{_uid()}") as unknown:
        r = unknown.get("/models")
        assert r.status_code == 401 and r.json()["code"] == "token_invalid"
    with live.http() as anonymous:
        r = anonymous.get("/models")
        assert r.status_code == 401 and r.json()["code"] == "token_missing"


def test_revoking_an_agent_token_releases_its_devices(
    live: Live, model_files: dict[str, Path]
) -> None:
    name = f"revoked-{_uid()}"
    with live.http(live.admin_token) as admin:
        old_id, old_tok = _new_token(admin, "agent")
        _, new_tok = _new_token(admin, "agent")
        with live.http(old_tok) as old, live.http(new_tok) as new:
            device_id = _register(old, name).json()["id"]
            job_id = _queue(live, model_files["mlp"], name)
            assert old.post(f"/agents/{device_id}/lease").json()["id"] == job_id
            r = admin.post(f"/tokens/{old_id}/revoke")
            assert r.status_code == 200 and r.json()["registered_devices"] == []
            beat = old.post(f"/agents/{device_id}/heartbeat", json={"job_id": job_id})
            assert beat.status_code == 401 and beat.json()["code"] == "token_revoked"
            assert _job(live, job_id)["status"] == "queued"
            taken = _register(new, name)
            assert taken.status_code == 200 and taken.json()["id"] == device_id, taken.text
            assert new.post(f"/agents/{device_id}/lease").json()["id"] == job_id
            done = new.post(f"/agents/{device_id}/jobs/{job_id}/report", json={"result": FAILED})
            assert done.status_code == 201, done.text


def test_device_scoped_agent_token(live: Live) -> None:
    u = _uid()
    with live.http(live.admin_token) as admin:
        token_id, tok = _new_token(admin, "agent", devices=[f"pixel-{u}-*", f"bench-{u}"])
        row = _token_row(admin, token_id)
        assert row["devices"] == [f"pixel-{u}-*", f"bench-{u}"] and row["revoked_at"] is None
        with live.http(tok) as agent:
            assert agent.get("/tokens/me").json()["devices"] == row["devices"]
            ok = _register(agent, f"pixel-{u}-1")
            assert ok.status_code == 200, ok.text
            assert _register(agent, f"bench-{u}").status_code == 200
            refused = _register(agent, f"jetson-{u}-1")
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "forbidden"
            assert f"'pixel-{u}-*'" in refused.json()["detail"]
            assert f"'jetson-{u}-1' does not match" in refused.json()["detail"]
            assert _register(agent, f"bench-{u}-2").status_code == 403  # exact names are exact
        assert _token_row(admin, token_id)["registered_devices"] == [f"pixel-{u}-1", f"bench-{u}"]
        # Unscoped agent tokens (the default) register any name, as before.
        unscoped_id, _ = _new_token(admin, "agent")
        assert _token_row(admin, unscoped_id)["devices"] is None

        bad = {
            "user scope": {"scope": "user", "devices": ["pixel-*"]},
            "empty list": {"scope": "agent", "devices": []},
            "character class": {"scope": "agent", "devices": ["pixel-[0-9]"]},
            "space": {"scope": "agent", "devices": ["my pixel"]},
            "unknown key": {"scope": "agent", "device": ["pixel-*"]},
        }
        for why, body in bad.items():
            r = admin.post("/tokens", json=body)
            assert r.status_code == 422, (why, r.text)
            assert r.json()["code"] == "validation_error", why
        r = admin.post("/tokens", json=bad["character class"])
        assert "pixel-[0-9]" in r.json()["detail"] and "wildcards" in r.json()["detail"]
        r = admin.post("/tokens", json=bad["user scope"])
        assert "agent" in r.json()["detail"]


def test_local_agent_token_file_survives_restarts_and_revocation(
    live: Live, tmp_path: Path
) -> None:
    """What ``make run`` does on every start (server/serve.py agent_token): the same token
    file re-registers the same local device; after a revocation a new token takes it over."""
    path = tmp_path / "agent.token"
    name = f"local-{_uid()}"
    first = agent_token(live.url, live.admin_token, path)
    assert agent_token(live.url, live.admin_token, path) == first  # a restart reuses the file
    with live.http(first) as agent:
        device_id = _register(agent, name).json()["id"]
        assert _register(agent, name).json()["id"] == device_id
        me = agent.get("/tokens/me").json()
    with live.http(live.admin_token) as admin:
        assert admin.post(f"/tokens/{me['id']}/revoke").status_code == 200
    second = agent_token(live.url, live.admin_token, path)
    assert second != first and path.read_text().strip() == second
    with live.http(second) as agent:
        r = _register(agent, name)
        assert r.status_code == 200 and r.json()["id"] == device_id, r.text


def test_cli_token_create_list_revoke_unbind(live: Live) -> None:
    env = _env({"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.admin_token})
    u = _uid()
    made = cli("token", "create", "--scope", "agent", "--name", f"cli-{u}",
               "--device", f"cam-{u}", "--device", f"cam-{u}-*", "--json", env=env, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["devices"] == [f"cam-{u}", f"cam-{u}-*"] and created["token"]

    with live.http(created["token"]) as agent:
        device_id = _register(agent, f"cam-{u}-1").json()["id"]

    listed = cli("token", "list", "--json", env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    row = {t["id"]: t for t in json.loads(listed.stdout)}[created["id"]]
    assert row["name"] == f"cli-{u}" and row["registered_devices"] == [f"cam-{u}-1"]
    assert row["revoked_at"] is None and row.get("token") is None

    table = cli("token", "list", env={**env, "COLUMNS": "250"}, timeout=60)
    assert table.returncode == 0, table.stderr
    assert f"cli-{u}" in table.stdout and f"cam-{u}-1" in table.stdout

    unbound = cli("token", "unbind", str(device_id), "--json", env=env, timeout=60)
    assert unbound.returncode == 0, unbound.stderr
    assert json.loads(unbound.stdout)["name"] == f"cam-{u}-1"

    revoked = cli("token", "revoke", str(created["id"]), env=env, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    assert f"token {created['id']}" in revoked.stdout and "revoked" in revoked.stdout
    with live.http(created["token"]) as agent:
        assert agent.get("/tokens/me").json()["code"] == "token_revoked"
    listed = cli("token", "list", "--json", env=env, timeout=60)
    row = {t["id"]: t for t in json.loads(listed.stdout)}[created["id"]]
    assert row["revoked_at"] is not None and row["registered_devices"] == []

    missing = cli("token", "revoke", "999999999", env=env, timeout=60)
    assert missing.returncode == 1 and "token 999999999 does not exist" in missing.stderr
    as_user = cli("token", "list", env={**env, "LATENCYLAB_TOKEN": live.user_token}, timeout=60)
    assert as_user.returncode == 1 and "403" in as_user.stderr


# --------------------------------------------------------------------------- private databases
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def private_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database that only this test uses (the live server's one is shared)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'private.db'}"
        return
    import psycopg

    try:
        admin = psycopg.connect(_pg_admin_url(), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    name = f"latencylab_tokens_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            admin.execute(f'DROP DATABASE "{name}"')


def _app(db_url: str, data_dir: Path) -> TestClient:
    return TestClient(
        create_app(Settings(data_dir=data_dir, database_url=db_url)), base_url="http://t/api/v1"
    )


def test_last_active_admin_token_cannot_be_revoked(private_db: str, tmp_path: Path) -> None:
    with _app(private_db, tmp_path) as c:
        first = (tmp_path / "admin.token").read_text().strip()
        h1 = {"Authorization": f"Bearer {first}"}
        first_id = c.get("/tokens/me", headers=h1).json()["id"]
        r = c.post(f"/tokens/{first_id}/revoke", headers=h1)
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        assert "last active admin token" in r.json()["detail"]
        assert c.get("/tokens/me", headers=h1).status_code == 200

        second = c.post("/tokens", json={"scope": "admin"}, headers=h1).json()
        h2 = {"Authorization": f"Bearer {second['token']}"}
        # With a second admin token, an admin may revoke the token it is using (rotation) ...
        assert c.post(f"/tokens/{first_id}/revoke", headers=h1).status_code == 200
        assert c.get("/tokens/me", headers=h1).json()["code"] == "token_revoked"
        # ... and the remaining one is the last again.
        r = c.post(f"/tokens/{second['id']}/revoke", headers=h2)
        assert r.status_code == 409 and r.json()["code"] == "conflict"
    # A restart replaces a revoked admin.token file with a fresh admin token.
    with _app(private_db, tmp_path) as c:
        fresh = (tmp_path / "admin.token").read_text().strip()
        assert fresh != first
        me = c.get("/tokens/me", headers={"Authorization": f"Bearer {fresh}"})
        assert me.status_code == 200 and me.json()["scope"] == "admin"


def test_migration_0004_keeps_existing_tokens_unscoped(private_db: str, tmp_path: Path) -> None:
    """A database made before device scopes (revision 0003) upgrades; its tokens still work
    and may register any device name."""
    engine = make_engine(private_db)
    upgrade(engine, "0003")
    plain = f"llg_{_uid()}{_uid()}"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_tokens (name, scope, token_hash, prefix, created_at) "
                "VALUES ('old agent', 'agent', :h, :p, CURRENT_TIMESTAMP)"
            ),
            {"h": hash_token(plain), "p": plain[:8]},
        )
    engine.dispose()
    with _app(private_db, tmp_path) as c:
        h = {"Authorization": f"Bearer {plain}"}
        me = c.get("/tokens/me", headers=h)
        assert me.status_code == 200 and me.json()["devices"] is None, me.text
        r = c.post("/agents/register", json={"name": f"any-{_uid()}", "class": "cpu"}, headers=h)
        assert r.status_code == 200, r.text
