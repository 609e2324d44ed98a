"""Artifacts on S3-compatible object storage, against moto's real HTTP server on loopback.

The store alone (in process): content-addressed writes, presigned uploads verified by hash,
a storage that is down. End to end (a coordinator subprocess with
``LATENCYLAB_ARTIFACTS_URL=s3://…`` on SQLite and PostgreSQL, a real agent and converter):
upload → conversion artifact → the agent downloads by presigned URL → result, and the
protocol's refusals: no URL for a device that does not hold the job.

moto does not check a presigned URL's signature or expiry (its S3 checks query-string auth
for neither), so what the coordinator controls is asserted: every URL carries the configured
``X-Amz-Expires`` from the moment it was issued, and one is issued only to the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bench import models
from latencylab.errors import ErrorCode
from server.artifacts import UploadTooLarge
from server.config import Settings
from server.errors import ApiError
from server.s3 import S3ArtifactStore
from tests.conftest import (
    FAST,
    REPO,
    SERVER_ENV,
    Live,
    S3Server,
    _env,
    _spawn_worker,
    _stop,
    _wait_for,
    free_port,
    fresh_postgres_database,
)

EXPIRY_S = 120


def _store(s3: S3Server, tmp_path: Path, bucket: str, **extra: Any) -> S3ArtifactStore:
    env = {k.removeprefix("LATENCYLAB_").lower(): v for k, v in s3.env(bucket).items()}
    return S3ArtifactStore(Settings(data_dir=tmp_path, **{**env, **extra}))


def _keys(s3: S3Server, bucket: str, prefix: str = "") -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


# ----------------------------------------------------------------------------- the store
def test_uploads_stream_into_content_addressed_keys(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    store = _store(s3_server, tmp_path, bucket)
    data = b"\x01\x02" * (3 << 20)  # 6 MiB, over one part of a multipart upload
    sha = hashlib.sha256(data).hexdigest()
    pending = store.open_pending(limit=len(data))
    for i in range(0, len(data), 1 << 16):
        pending.write(data[i : i + (1 << 16)])
    assert pending.commit() == (sha, True)
    assert _keys(s3_server, bucket) == {f"artifacts/{sha[:2]}/{sha}"}
    assert not list(store.tmp.iterdir())  # the local copy went with the commit

    again = store.open_pending(limit=len(data))
    again.write(data)
    assert again.commit() == (sha, False)  # stored before: not uploaded again
    assert store.exists(sha) and store.size(sha) == len(data)
    assert b"".join(store.iter_bytes(sha)) == data
    assert list(store.stored_before(time.time() + 60)) == [sha]
    assert list(store.stored_before(time.time() - 3600)) == []
    assert store.delete(sha) == len(data) and store.delete(sha) == -1
    assert not store.exists(sha) and _keys(s3_server, bucket) == set()

    over = store.open_pending(limit=10)
    with pytest.raises(UploadTooLarge):
        over.write(b"x" * 11)
    over.discard()
    assert not list(store.tmp.iterdir())


def test_presigned_upload_is_verified_then_filed(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    store = _store(s3_server, tmp_path, bucket, s3_presign_expiry_s=EXPIRY_S)
    data = b"converted artifact bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    issued = datetime.now(UTC).replace(microsecond=0)
    ticket = store.upload_ticket(7, len(data), sha)
    assert ticket.mode == "presigned" and ticket.url and ticket.upload_id
    query = parse_qs(urlsplit(ticket.url).query)
    assert query["X-Amz-Expires"] == [str(EXPIRY_S)] and ticket.expires_in_s == EXPIRY_S
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((signed_at - issued).total_seconds()) < 60
    # length and checksum are signed: S3 and MinIO refuse other bytes
    assert query["X-Amz-SignedHeaders"] == ["content-length;host;x-amz-checksum-sha256"]
    assert urlsplit(ticket.url).port == s3_server.port

    put = httpx.put(ticket.url, content=data, headers=ticket.headers)
    assert put.status_code == 200, put.text
    staged = store.staged_upload(7, ticket.upload_id, sha, limit=len(data))
    assert (staged.sha256, staged.size) == (sha, len(data))
    assert staged.commit() == (sha, True)
    assert _keys(s3_server, bucket) == {f"artifacts/{sha[:2]}/{sha}"}  # the temporary key went

    # announced one hash, sent other bytes: refused and removed
    other = store.upload_ticket(7, len(data), sha)
    assert other.url and other.upload_id
    assert httpx.put(other.url, content=data[::-1], headers=other.headers).status_code == 200
    with pytest.raises(ApiError) as err:
        store.staged_upload(7, other.upload_id, sha, limit=len(data))
    assert err.value.status_code == 422 and err.value.code == ErrorCode.checksum_mismatch
    # too large for the coordinator's limit: refused and removed
    big = store.upload_ticket(8, len(data), sha)
    assert big.url and big.upload_id
    assert httpx.put(big.url, content=data, headers=big.headers).status_code == 200
    with pytest.raises(UploadTooLarge):
        store.staged_upload(8, big.upload_id, sha, limit=len(data) - 1)
    assert _keys(s3_server, bucket, "artifacts/tmp/") == set()
    # never uploaded (or another job's id): 404
    with pytest.raises(ApiError) as missing:
        store.staged_upload(9, ticket.upload_id, sha, limit=len(data))
    assert missing.value.status_code == 404

    url = store.download_url(sha, f"{sha}.bin")
    assert url and parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(EXPIRY_S)]
    assert hashlib.sha256(httpx.get(url).content).hexdigest() == sha


def test_a_storage_that_is_down_is_a_503(s3_server: S3Server, tmp_path: Path) -> None:
    store = _store(
        s3_server, tmp_path, "latencylab-down", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    pending = store.open_pending(limit=100)
    pending.write(b"model")
    with pytest.raises(ApiError) as err:
        pending.commit()
    assert err.value.status_code == 503 and err.value.code == ErrorCode.unavailable
    assert not list(store.tmp.iterdir())


# ----------------------------------------------------------------------------- end to end
@dataclass
class S3Live:
    live: Live
    s3: S3Server
    bucket: str
    agent_log: Path
    converter_log: Path
    agent_device: str


def _wait_online(live: Live, names: set[str], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    with live.http(live.user_token) as c:
        while not names <= {d["name"] for d in c.get("/devices").json() if d["status"] == "online"}:
            assert all(p.poll() is None for p in procs), "a worker exited"
            assert time.monotonic() < deadline, "agent and converter did not register in 90 s"
            time.sleep(0.3)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def s3_live(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Live]:
    """A coordinator with its artifacts in a fresh bucket, a real agent and converter worker;
    a private database (its queue shared with no other coordinator)."""
    data_dir = tmp_path_factory.mktemp("s3-data")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            db = f"sqlite:///{data_dir / 'latencylab.db'}"
        else:
            db = stack.enter_context(fresh_postgres_database())
        bucket = s3_server.new_bucket()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = _env(
            {
                **SERVER_ENV,
                **s3_server.env(bucket),
                "LATENCYLAB_DATABASE_URL": db,
                "LATENCYLAB_S3_PRESIGN_EXPIRY_S": str(EXPIRY_S),
            }
        )
        log = data_dir / "server.log"
        cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent", "--port", str(port),
               "--data-dir", str(data_dir)]  # fmt: skip
        with log.open("wb") as fh:
            server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        stack.callback(_stop, server)
        _wait_for(url, server, log)
        admin = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            user = c.post("/tokens", json={"scope": "user", "name": "s3 tests"}).json()["token"]
            agent = c.post("/tokens", json={"scope": "agent", "name": "s3 agent"}).json()["token"]
        name = f"s3-cpu-{uuid.uuid4().hex[:6]}"
        alog, clog = data_dir / "agent.log", data_dir / "converter.log"
        workers = [
            _spawn_worker("agent", url, agent, name, data_dir / "agent", alog),
            _spawn_worker("converter", url, agent, f"{name}-converter", data_dir / "agent", clog),
        ]
        for proc in workers:
            stack.callback(_stop, proc)
        live = Live(url, data_dir, admin, user, agent, db, name)
        _wait_online(live, {name, f"{name}-converter"}, workers)
        yield S3Live(live, s3_server, bucket, alog, clog, name)


def test_upload_convert_download_by_presigned_url_measure(
    s3_live: S3Live, model_files: dict[str, Path]
) -> None:
    live, moto = s3_live.live, s3_live.s3
    with live.http(live.user_token) as c:
        health = c.get("/health").json()
        assert health["artifact_store"] == "s3"
        up = c.post(
            "/models",
            files={"file": ("mlp.onnx", model_files["mlp"].read_bytes())},
            data={"name": "s3-mlp"},
        )
        assert up.status_code == 201, up.text
        model = up.json()
        target = {"runtime": "openvino", "device": s3_live.agent_device, "threads": 1}
        r = c.post(
            "/benchmarks", json={"model_id": model["id"], "targets": [target], "settings": FAST}
        )
        assert r.status_code == 202, r.text
        bench_id = r.json()["id"]
        deadline = time.monotonic() + 300
        while (bench := c.get(f"/benchmarks/{bench_id}").json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, bench
            time.sleep(0.5)
        assert bench["status"] == "succeeded", bench
        result = bench["results"][0]
        assert result["runtime"] == "openvino" and result["latency_ms"]["p50"] > 0
        conv = c.get(f"/models/{model['id']}/conversions").json()[0]
        assert conv["status"] == "succeeded" and conv["artifact"]["format"] == "openvino"
        art_sha = conv["artifact"]["sha256"]
        log = c.get(conv["log"].removeprefix("/api/v1"))  # users: streamed by the coordinator
        assert log.status_code == 200 and log.text
        blob = c.get(f"/artifacts/{art_sha}")
        assert blob.status_code == 200 and hashlib.sha256(blob.content).hexdigest() == art_sha

    # Every byte sits in the bucket under its hash; none on the coordinator's disk, no
    # temporary key left behind.
    keys = _keys(moto, s3_live.bucket)
    for sha in (model["sha256"], art_sha):
        assert f"artifacts/{sha[:2]}/{sha}" in keys
    assert not [k for k in keys if k.startswith("artifacts/tmp/")]
    local = live.data_dir / "artifacts"
    assert not [p for p in local.rglob("*") if p.is_file()], list(local.rglob("*"))
    # The agent and the converter moved the bytes with the storage itself (its port), never
    # through the coordinator.
    moto_at = f"127.0.0.1:{moto.port} (presigned URL)"
    agent_log, converter_log = s3_live.agent_log.read_text(), s3_live.converter_log.read_text()
    assert f"artifact {art_sha[:12]} downloaded from {moto_at}" in agent_log, agent_log[-3000:]
    assert f"artifact {model['sha256'][:12]} downloaded from {moto_at}" in converter_log
    assert f"uploaded to {moto_at}" in converter_log, converter_log[-3000:]
    assert "downloaded from the coordinator" not in agent_log + converter_log


def _register(c: httpx.Client, name: str) -> int:
    body = {"name": name, "class": "cpu", "runtimes": {"onnxruntime": "1"}}
    r = c.post("/agents/register", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


def test_urls_only_for_the_device_holding_the_job(
    s3_live: S3Live, model_files: dict[str, Path]
) -> None:
    """An agent speaking the protocol by hand: a 307 to the storage while it holds the job,
    403 / 409 ``lease_lost`` and no URL once it does not."""
    live, moto = s3_live.live, s3_live.s3
    name = f"s3-manual-{uuid.uuid4().hex[:6]}"
    with live.http(live.admin_token) as admin:
        token = admin.post("/tokens", json={"scope": "agent", "name": name}).json()["token"]
    with live.http(token) as agent, live.http(live.user_token) as user:
        device = _register(agent, name)
        up = user.post(
            "/models",
            files={"file": ("mbv2.onnx", model_files["mbv2"].read_bytes())},
            data={"name": name},
        )
        sha = up.json()["sha256"]
        refused = agent.get(f"/artifacts/{sha}")  # no job yet
        assert refused.status_code == 403 and refused.json()["code"] == "lease_lost"
        assert "location" not in refused.headers
        target = {"runtime": "onnxruntime", "device": name}
        r = user.post(
            "/benchmarks", json={"model_id": up.json()["id"], "targets": [target], "settings": FAST}
        )
        assert r.status_code == 202, r.text
        job = agent.post(f"/agents/{device}/lease").json()
        assert job["artifact_sha256"] == sha

        redirect = agent.get(f"/artifacts/{sha}")
        assert redirect.status_code == 307, redirect.text
        location = redirect.headers["location"]
        assert urlsplit(location).port == moto.port
        assert parse_qs(urlsplit(location).query)["X-Amz-Expires"] == [str(EXPIRY_S)]
        got = httpx.get(location)
        assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == sha

        data = b"an agent's log\n" * 100
        start = {"format": "log", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        ticket = agent.post(f"/agents/{device}/jobs/{job['id']}/uploads", json=start).json()
        assert ticket["mode"] == "presigned" and urlsplit(ticket["url"]).port == moto.port
        assert httpx.put(ticket["url"], content=data, headers=ticket["headers"]).status_code == 200
        finish = {"format": "log", "sha256": start["sha256"]}
        done = agent.post(
            f"/agents/{device}/jobs/{job['id']}/uploads/{ticket['upload_id']}", json=finish
        )
        assert done.status_code == 201, done.text
        assert done.json() == {"sha256": start["sha256"], "size": len(data), "format": "log"}
        too_big = {**start, "size": 31 * 2**20}  # over LATENCYLAB_MAX_UPLOAD_MB (30)
        assert (
            agent.post(f"/agents/{device}/jobs/{job['id']}/uploads", json=too_big).status_code
            == 413
        )

        _register(agent, name)  # an agent restart: the job it held goes back to the queue
        lost = agent.get(f"/artifacts/{sha}")
        assert lost.status_code == 403 and lost.json()["code"] == "lease_lost"
        assert "location" not in lost.headers
        no_ticket = agent.post(f"/agents/{device}/jobs/{job['id']}/uploads", json=start)
        assert no_ticket.status_code == 409 and no_ticket.json()["code"] == "lease_lost"
        assert "url" not in no_ticket.json()
        late = agent.post(
            f"/agents/{device}/jobs/{job['id']}/uploads/{ticket['upload_id']}", json=finish
        )
        assert late.status_code == 409 and late.json()["code"] == "lease_lost"


def test_garbage_collection_removes_objects(s3_live: S3Live) -> None:
    """Deleting a model, then collecting, removes its object from the bucket; so does an
    object under a hash no row knows (left by a crash)."""
    live, moto = s3_live.live, s3_live.s3
    data = b"not really a model " + uuid.uuid4().bytes
    orphan = hashlib.sha256(data).hexdigest()
    moto.client().put_object(
        Bucket=s3_live.bucket, Key=f"artifacts/{orphan[:2]}/{orphan}", Body=data
    )
    with live.http(live.user_token) as user, live.http(live.admin_token) as admin:
        mlp = models.mlp(features=8, hidden=8, seed=int(uuid.uuid4().int % 2**31))  # unique
        path = models.save(mlp, live.data_dir / "gc.onnx")
        up = user.post(
            "/models", files={"file": ("gc.onnx", path.read_bytes())}, data={"name": "gc"}
        )
        assert up.status_code == 201, up.text
        sha = up.json()["sha256"]
        assert f"artifacts/{sha[:2]}/{sha}" in _keys(moto, s3_live.bucket)
        assert (
            user.delete(f"/models/{up.json()['id']}", params={"results": "delete"}).status_code
            == 204
        )
        report = admin.post("/artifacts/gc", params={"grace_s": 0})
        assert report.status_code == 200, report.text
        assert report.json()["files_deleted"] >= 2
    keys = _keys(moto, s3_live.bucket)
    assert f"artifacts/{sha[:2]}/{sha}" not in keys
    assert f"artifacts/{orphan[:2]}/{orphan}" not in keys
