"""Correcting and deleting models, and garbage collection of the artifact store.

On both backends against the live coordinator. Measurements come from simulated devices
driven through the public agent routes (register, lease, report) with chosen latencies, so the
tests are fast and a job can be held "running" on purpose; the conversion runs on the real
converter worker. Artifact rows are read straight from the live database and files from the
live artifact store, to see what garbage collection removed and what it kept.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.conversions import Conversion
from db.engine import make_engine, make_session_factory
from db.models import Artifact, Job, utcnow
from db.nas import TableEntry
from server.app import create_app
from server.artifacts import LocalArtifactStore
from server.config import Settings
from server.store.artifacts import add_artifact, claim
from tests.conftest import Live


# ----------------------------------------------------------------------------- helpers
class SimDevice:
    """A device driven through the public agent routes; it reports chosen latencies."""

    def __init__(self, live: Live, prefix: str = "sim-edit") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        with live.http(live.admin_token) as c:
            tok = c.post("/tokens", json={"scope": "agent", "name": self.name}).json()["token"]
        self.http = live.http(tok)
        body = {"name": self.name, "class": "cpu", "runtimes": {"onnxruntime": "1.20.1"}}
        r = self.http.post("/agents/register", json=body)
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]

    def queue(self, user: httpx.Client, model_id: int) -> dict[str, Any]:
        target = {"runtime": "onnxruntime", "device": self.name}
        r = user.post("/benchmarks", json={"model_id": model_id, "targets": [target]})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def lease(self) -> dict[str, Any] | None:
        r = self.http.post(f"/agents/{self.id}/lease")
        assert r.status_code in (200, 204), r.text
        return dict(r.json()) if r.status_code == 200 else None

    def report(self, job_id: int, p50: float) -> None:
        lat = {"min": p50 * 0.9, "mean": p50, "p50": p50, "p90": p50 * 1.1, "p95": p50 * 1.2}
        lat |= {"p99": p50 * 1.3, "max": p50 * 1.5, "std": p50 * 0.05, "cov": 0.05}
        result = {"status": "succeeded", "latency_ms": lat, "runs": 30, "times_ms": [p50] * 30}
        r = self.http.post(f"/agents/{self.id}/jobs/{job_id}/report", json={"result": result})
        assert r.status_code == 201, r.text

    def measure(self, user: httpx.Client, model_id: int, p50: float) -> dict[str, Any]:
        bench = self.queue(user, model_id)
        job = self.lease()
        assert job is not None and job["id"] == bench["jobs"][0]["id"]
        self.report(job["id"], p50)
        return bench


@pytest.fixture(scope="module")
def sim(live: Live) -> SimDevice:
    return SimDevice(live)


@pytest.fixture(scope="module")
def sessions(live: Live) -> Iterator[sessionmaker[Session]]:
    """Sessions on the live coordinator's own database."""
    engine = make_engine(live.database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def store(live: Live) -> LocalArtifactStore:
    return LocalArtifactStore(live.data_dir / "artifacts")


def unique_model(model_files: dict[str, Path], tmp_path: Path) -> Path:
    """The MLP with a doc string of its own: bytes (and an artifact) no other test shares."""
    proto = onnx.load(str(model_files["mlp"]))
    proto.doc_string = f"test_models_edit {uuid.uuid4().hex}"
    path = tmp_path / f"mlp-{uuid.uuid4().hex[:6]}.onnx"
    onnx.save(proto, str(path))
    return path


def upload(c: httpx.Client, path: Path, name: str, meta: dict[str, Any]) -> dict[str, Any]:
    r = c.post(
        "/models",
        files={"file": (path.name, path.read_bytes())},
        data={"name": name, "metadata": json.dumps(meta)},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def artifact_row(sessions: sessionmaker[Session], sha: str) -> Artifact | None:
    with sessions() as s:
        return s.get(Artifact, sha)


def pareto(c: httpx.Client, sim: SimDevice, metric: str = "top1") -> dict[int, dict[str, Any]]:
    r = c.get("/pareto", params={"device": sim.name, "runtime": "onnxruntime", "metric": metric})
    assert r.status_code == 200, r.text
    return {p["model_id"]: p for p in r.json()["points"]}


def stored_artifact(
    sessions: sessionmaker[Session], store: LocalArtifactStore, data: bytes, age_s: float
) -> str:
    """An artifact row and file nothing refers to, last used ``age_s`` seconds ago."""
    pending = store.open_pending(limit=len(data) + 1)
    pending.write(data)
    with sessions() as s:
        sha, _, _ = add_artifact(s, pending, "onnx")
        s.execute(
            update(Artifact)
            .where(Artifact.sha256 == sha)
            .values(used_at=utcnow() - timedelta(seconds=age_s))
        )
        s.commit()
    return sha


# ----------------------------------------------------------------------------- PATCH
def test_patch_changes_name_accuracy_and_tags_in_lists_and_pareto(
    live: Live, sim: SimDevice, model_files: dict[str, Path], tmp_path: Path
) -> None:
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        m = upload(c, path, "typo-nmae", {"accuracy": {"top1": 50.0}, "tags": ["old"], "x": 1})
        sim.measure(c, m["id"], 2.5)
        assert pareto(c, sim)[m["id"]]["accuracy"] == 50.0

        body = {
            "name": "mbv2-fixed",
            "accuracy": {"top1": 77.5, "top5": 93.25},
            "tags": ["edited", "mobile"],
            "metadata": {"paper": "arXiv:1801.04381", "x": None},
        }
        r = c.patch(f"/models/{m['id']}", json=body)
        assert r.status_code == 200, r.text
        edited = r.json()
        assert edited["name"] == "mbv2-fixed"
        assert edited["metadata"] == {
            "accuracy": {"top1": 77.5, "top5": 93.25},
            "tags": ["edited", "mobile"],
            "paper": "arXiv:1801.04381",
        }
        listed = {x["id"]: x for x in c.get("/models").json()}
        assert listed[m["id"]]["name"] == "mbv2-fixed"
        assert listed[m["id"]]["metadata"] == edited["metadata"]
        assert c.get(f"/models/{m['id']}").json() == edited

        point = pareto(c, sim)[m["id"]]
        assert (point["name"], point["accuracy"], point["tags"]) == (
            "mbv2-fixed",
            77.5,
            ["edited", "mobile"],
        )
        assert pareto(c, sim, "top5")[m["id"]]["accuracy"] == 93.25

        # Only what is given changes; null removes accuracy (the model leaves the Pareto page).
        r = c.patch(f"/models/{m['id']}", json={"accuracy": None})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "mbv2-fixed"
        assert r.json()["metadata"] == {"tags": ["edited", "mobile"], "paper": "arXiv:1801.04381"}
        assert m["id"] not in pareto(c, sim)


def test_bad_patches_are_422_and_change_nothing(
    live: Live, model_files: dict[str, Path], tmp_path: Path
) -> None:
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        m = upload(c, path, "as-uploaded", {"accuracy": {"top1": 60.0}, "tags": ["t"]})
        url = f"/models/{m['id']}"
        headers = {"Content-Type": "application/json"}
        bad: list[tuple[str, str]] = [
            ('{"nmae": "x"}', "nmae"),
            ('{"accuracy": {"top1": NaN}}', "accuracy.top1"),
            ('{"accuracy": {"top1": Infinity}}', "accuracy.top1"),
            ('{"accuracy": {"top1": "75.3"}}', "accuracy.top1"),
            ('{"accuracy": {"top1": true}}', "accuracy.top1"),
            ('{"accuracy": [75.3]}', "accuracy"),
            ('{"name": null}', "name cannot be null"),
            ('{"name": "   "}', "name"),
            ('{"tags": "mobile"}', "tags"),
            ('{"tags": [""]}', "tags.0"),
            ('{"metadata": {"input_shapes": {"input": [1, 3, 8, 8]}}}', "input_shapes"),
            ('{"metadata": {"accuracy": {"top1": 1}}}', "top-level 'accuracy'"),
            ('{"metadata": {"a": "nul\\u0000"}}', "NUL"),
        ]
        for raw, named in bad:
            r = c.patch(url, content=raw, headers=headers)
            assert r.status_code == 422, (raw, r.text)
            assert r.json()["code"] == "validation_error", r.text
            assert named in r.json()["detail"], (raw, r.json()["detail"])
        assert c.get(url).json() == m

        assert c.patch("/models/999999999", json={"name": "x"}).status_code == 404
        big = {"metadata": {"notes": "x" * 70_000}}
        r = c.patch(url, json=big)
        assert r.status_code == 422 and "KiB" in r.json()["detail"], r.text
        assert c.get(url).json() == m

    # Another user may read the model but not change or delete it; an admin may.
    with live.http(live.admin_token) as admin:
        other = admin.post("/tokens", json={"scope": "user", "name": "other user"}).json()
        r = admin.patch(url, json={"tags": ["by-admin"]})
        assert r.status_code == 200 and r.json()["metadata"]["tags"] == ["by-admin"], r.text
    with live.http(other["token"]) as c2:
        r = c2.patch(url, json={"name": "stolen"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        assert "uploaded with another token" in r.json()["detail"]
        r = c2.delete(url, params={"results": "delete"})
        assert r.status_code == 403, r.text
        assert c2.get(url).json()["name"] == "as-uploaded"


# ----------------------------------------------------------------------------- DELETE
def test_delete_keep_hides_the_model_and_keeps_its_results(
    live: Live,
    sim: SimDevice,
    model_files: dict[str, Path],
    tmp_path: Path,
    sessions: sessionmaker[Session],
    store: LocalArtifactStore,
) -> None:
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        m = upload(c, path, "duplicate", {"accuracy": {"top1": 70.0}})
        bench = sim.measure(c, m["id"], 3.0)
        done = c.get(f"/benchmarks/{bench['id']}").json()
        result = done["results"][0]
        assert m["id"] in pareto(c, sim)

        r = c.delete(f"/models/{m['id']}", params={"results": "keep"})
        assert r.status_code == 204, r.text

        r = c.get(f"/models/{m['id']}")
        assert r.status_code == 410 and r.json()["code"] == "model_deleted", r.text
        assert m["id"] not in {x["id"] for x in c.get("/models").json()}
        assert m["id"] not in pareto(c, sim)
        # The published numbers survive, readable by id.
        assert c.get(f"/benchmarks/{bench['id']}").json() == done
        raw = c.get(f"/benchmarks/{bench['id']}/results/{result['id']}/raw")
        assert raw.status_code == 200 and len(raw.json()["times_ms"]) == 30
        assert [b["id"] for b in c.get("/benchmarks", params={"model_id": m["id"]}).json()] == [
            bench["id"]
        ]
        # Gone for everything else.
        assert c.patch(f"/models/{m['id']}", json={"name": "x"}).status_code == 410
        target = {"runtime": "onnxruntime", "device": sim.name}
        r = c.post("/benchmarks", json={"model_id": m["id"], "targets": [target]})
        assert r.status_code == 404, r.text
        again = c.delete(f"/models/{m['id']}", params={"results": "keep"})
        assert again.status_code == 410, again.text

        # Its file was collected at once; the row stays (its jobs name it), marked purged.
        assert not store.path_for(m["sha256"]).exists()
        row = artifact_row(sessions, m["sha256"])
        assert row is not None and row.purged_at is not None
        assert c.get(f"/artifacts/{m['sha256']}").status_code == 404

        # Uploading the same bytes again brings the file back.
        m2 = upload(c, path, "back", {})
        assert m2["sha256"] == m["sha256"]
        assert store.path_for(m["sha256"]).is_file()
        got = c.get(f"/artifacts/{m['sha256']}")
        assert got.status_code == 200 and got.content == path.read_bytes()
        row = artifact_row(sessions, m["sha256"])
        assert row is not None and row.purged_at is None

        # results=delete removes what "keep" kept.
        r = c.delete(f"/models/{m['id']}", params={"results": "delete"})
        assert r.status_code == 204, r.text
        assert c.get(f"/models/{m['id']}").status_code == 404
        assert c.get(f"/benchmarks/{bench['id']}").status_code == 404
        assert store.path_for(m["sha256"]).is_file()  # the re-upload still uses it


def test_delete_with_results_removes_benchmarks_conversions_and_files(
    live: Live,
    sim: SimDevice,
    model_files: dict[str, Path],
    tmp_path: Path,
    sessions: sessionmaker[Session],
    store: LocalArtifactStore,
) -> None:
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        m = upload(c, path, "wrong-upload", {"accuracy": {"top1": 10.0}})
        bench = sim.measure(c, m["id"], 1.5)
        result_id = c.get(f"/benchmarks/{bench['id']}").json()["results"][0]["id"]
        r = c.post("/conversions", json={"model_id": m["id"], "target": "openvino"})
        assert r.status_code == 202, r.text
        conv_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (conv := c.get(f"/conversions/{conv_id}").json())["status"] != "succeeded":
            assert conv["status"] != "failed", conv
            assert time.monotonic() < deadline, conv
            time.sleep(0.3)
        conv_sha = conv["artifact"]["sha256"]
        with sessions() as s:
            row = s.get(Conversion, conv_id)
            assert row is not None and row.log_sha256 is not None
            log_sha = row.log_sha256
        assert store.path_for(conv_sha).is_file() and store.path_for(log_sha).is_file()

        r = c.delete(f"/models/{m['id']}", params={"results": "delete"})
        assert r.status_code == 204, r.text
        assert c.get(f"/models/{m['id']}").status_code == 404
        assert c.get(f"/benchmarks/{bench['id']}").status_code == 404
        assert c.get(f"/benchmarks/{bench['id']}/results/{result_id}/raw").status_code == 404
        assert c.get(f"/conversions/{conv_id}").status_code == 404
        assert bench["id"] not in {b["id"] for b in c.get("/benchmarks").json()}
        # Nothing refers to the model's file or the converted one any more: rows and files gone.
        for sha in (m["sha256"], conv_sha, log_sha):
            assert artifact_row(sessions, sha) is None, sha
            assert not store.path_for(sha).exists(), sha


def test_delete_refuses_running_jobs_and_cancels_queued_ones(
    live: Live, model_files: dict[str, Path], tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    dev = SimDevice(live, "sim-busy")
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        m = upload(c, path, "busy", {})
        first, second = dev.queue(c, m["id"]), dev.queue(c, m["id"])
        job = dev.lease()
        assert job is not None and job["id"] == first["jobs"][0]["id"]

        r = c.delete(f"/models/{m['id']}", params={"results": "keep"})
        assert r.status_code == 409 and r.json()["code"] == "model_busy", r.text
        assert str(job["id"]) in r.json()["detail"]
        # Nothing changed: the model is there, the second job still queued.
        assert c.get(f"/models/{m['id']}").status_code == 200
        assert c.get(f"/benchmarks/{second['id']}").json()["jobs"][0]["status"] == "queued"

        dev.report(job["id"], 4.0)
        r = c.delete(f"/models/{m['id']}", params={"results": "keep"})
        assert r.status_code == 204, r.text
        cancelled = c.get(f"/benchmarks/{second['id']}").json()
        assert cancelled["status"] == "failed"
        assert cancelled["jobs"][0]["status"] == "cancelled"
        assert cancelled["jobs"][0]["error"] == f"cancelled: model {m['id']} was deleted"
        assert c.get(f"/benchmarks/{first['id']}").json()["status"] == "succeeded"
        assert dev.lease() is None


def test_table_models_cannot_be_deleted_and_their_files_go_once_measured(
    live: Live, sessions: sessionmaker[Session], store: LocalArtifactStore
) -> None:
    dev = SimDevice(live, "sim-table")
    with live.http(live.user_token) as c:
        body = {"space": "ofa-proxyless", "device": dev.name, "resolution": 128, "validate_n": 2}
        r = c.post("/tables", json=body)
        assert r.status_code in (200, 201, 202), r.text
        job = dev.lease()
        assert job is not None
        with sessions() as s:
            entry = s.scalar(select(TableEntry).where(TableEntry.job_id == job["id"]))
            assert entry is not None and entry.model_id is not None
            block_model, waiting = (
                entry.model_id,
                s.scalars(
                    select(Job).where(Job.kind == "table_block", Job.status == "queued")
                ).all(),
            )
        other = [j for j in waiting if j.device_selector == dev.name]
        assert other, "the table keeps a second block queued"
        # A user cannot delete a generated model (it has no uploader); an admin gets a 409.
        assert c.delete(f"/models/{block_model}").status_code == 403
    with live.http(live.admin_token) as admin:
        r = admin.delete(f"/models/{block_model}", params={"results": "delete"})
        assert r.status_code == 409 and r.json()["code"] == "model_in_use", r.text

        dev.report(job["id"], 0.25)
        measured_sha = job["artifact_sha256"]
        queued_sha = other[0].artifact_sha256
        assert queued_sha is not None
        with sessions() as s:  # both generated long ago: only what needs them decides
            s.execute(
                update(Artifact)
                .where(Artifact.sha256.in_([measured_sha, queued_sha]))
                .values(used_at=utcnow() - timedelta(hours=2))
            )
            s.commit()
        r = admin.post("/artifacts/gc", params={"grace_s": 3600})
        assert r.status_code == 200, r.text
    # The measured block's file goes (its number lives on in the table), the row stays; the
    # block still to be measured keeps its file.
    assert not store.path_for(measured_sha).exists()
    row = artifact_row(sessions, measured_sha)
    assert row is not None and row.purged_at is not None
    assert store.path_for(queued_sha).is_file()
    with sessions() as s:
        measured = s.scalar(select(TableEntry).where(TableEntry.job_id == job["id"]))
        assert measured is not None and measured.status == "succeeded"
        assert measured.min_ms == pytest.approx(0.225)


# ----------------------------------------------------------------------------- GC
def test_gc_frees_unreferenced_artifacts_and_keeps_the_rest(
    live: Live,
    model_files: dict[str, Path],
    tmp_path: Path,
    sessions: sessionmaker[Session],
    store: LocalArtifactStore,
) -> None:
    old = stored_artifact(sessions, store, os.urandom(4096), age_s=7200)
    fresh = stored_artifact(sessions, store, os.urandom(2048), age_s=0)
    orphan_bytes = os.urandom(1024)
    orphan = stored_artifact(sessions, store, orphan_bytes, age_s=7200)
    with sessions() as s:  # a file no row knows (as a crash would leave it), written long ago
        s.execute(Artifact.__table__.delete().where(Artifact.sha256 == orphan))
        s.commit()
    past = time.time() - 7200
    os.utime(store.path_for(orphan), (past, past))
    path = unique_model(model_files, tmp_path)
    with live.http(live.user_token) as c:
        kept = upload(c, path, "referenced", {})
    with sessions() as s:  # old, but a model uses it
        s.execute(
            update(Artifact)
            .where(Artifact.sha256 == kept["sha256"])
            .values(used_at=utcnow() - timedelta(hours=3))
        )
        s.commit()

    with live.http(live.user_token) as c:
        assert c.post("/artifacts/gc").status_code == 403  # admin only
    with live.http(live.admin_token) as admin:
        r = admin.post("/artifacts/gc", params={"grace_s": 3600})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["artifacts_deleted"] >= 1 and report["files_deleted"] >= 2
    assert report["bytes_freed"] >= 4096 + 1024
    assert artifact_row(sessions, old) is None and not store.path_for(old).exists()
    assert not store.path_for(orphan).exists()
    # Inside the grace period: kept (an upload in flight); referenced by a model: kept.
    assert artifact_row(sessions, fresh) is not None and store.path_for(fresh).is_file()
    row = artifact_row(sessions, kept["sha256"])
    assert row is not None and row.purged_at is None
    assert store.path_for(kept["sha256"]).is_file()


def test_gc_never_takes_the_file_of_an_upload_that_claimed_it(
    live: Live, sessions: sessionmaker[Session], store: LocalArtifactStore
) -> None:
    """An upload of the same bytes claims the row before relying on the file; a collection
    running meanwhile waits for that transaction and then spares the artifact."""
    sha = stored_artifact(sessions, store, os.urandom(3000), age_s=7200)
    answer: dict[str, Any] = {}

    def collect() -> None:
        with live.http(live.admin_token) as admin:
            answer["r"] = admin.post("/artifacts/gc", params={"grace_s": 60})

    with sessions() as upload_tx:
        assert claim(upload_tx, sha)  # the upload's transaction: claimed, not yet committed
        gc = threading.Thread(target=collect)
        gc.start()
        gc.join(timeout=1.5)
        assert gc.is_alive(), "the collection did not wait for the claiming transaction"
        upload_tx.commit()
    gc.join(timeout=60)
    assert not gc.is_alive()
    assert answer["r"].status_code == 200, answer["r"].text
    assert store.path_for(sha).is_file()
    row = artifact_row(sessions, sha)
    assert row is not None and row.purged_at is None


def test_gc_runs_periodically(tmp_path: Path) -> None:
    """The coordinator's collector thread (LATENCYLAB_GC_INTERVAL_S) on a private SQLite."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'gc.db'}",
        gc_interval_s=0.2,
        gc_grace_s=0,
    )
    with TestClient(create_app(settings)):
        engine = make_engine(settings.resolved_database_url)
        try:
            own = make_session_factory(engine)
            st = LocalArtifactStore(settings.artifacts_dir)
            sha = stored_artifact(own, st, os.urandom(500), age_s=1)
            deadline = time.monotonic() + 10
            while st.path_for(sha).exists():
                assert time.monotonic() < deadline, "the periodic collection did not run"
                time.sleep(0.1)
            assert artifact_row(own, sha) is None
        finally:
            engine.dispose()
