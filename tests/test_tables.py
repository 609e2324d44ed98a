"""Latency tables end to end on SQLite and PostgreSQL: a real coordinator, a real agent.

One small table per backend (ofa-proxyless at 128, 103 blocks, 6 validation networks,
short measurement settings) is built once and shared; the rest reuse its entries. Each
backend has a private coordinator and agent for this module (its table jobs stay out of the
session's shared queue), and both builds run at once: each is a chain of ~110 one-at-a-time
jobs that keeps about half a CPU busy. The full 224 / 100-archs case is
``python -m bench.tables`` (minutes).
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from latencylab.client import LatencyLabError
from latencylab.spaces import get_space, lut_sum_ofa_style
from latencylab.tables import TablePublic
from tests.conftest import REPO, Live, _env, cli, fresh_postgres_database, running_coordinator

RES, N = 128, 6
QUICK = {
    "warmup_runs": 2,
    "min_runs": 10,
    "min_duration_s": 0.05,
    "max_duration_s": 0.5,
    "target_rel_ci": 0.05,
    "profile": False,
    "timeout_s": 120,
}
PARAMS = {"resolution": RES, "device": "local", "threads": 1, "validate_n": N}
SPACE = get_space("ofa-proxyless")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class _Backend:
    """One backend's private coordinator and its table build, run in a thread of their own."""

    live: Future[Live] = field(default_factory=Future)
    posted: Future[dict[str, object]] = field(default_factory=Future)
    done: Future[TablePublic] = field(default_factory=Future)
    seen: list[int] = field(default_factory=list)


def _serve_and_build(name: str, tmp: Path, state: _Backend, stop: threading.Event) -> None:
    """Start the coordinator, POST the table, wait for it; keep serving until ``stop``."""
    futures: list[Future[Any]] = [state.live, state.posted, state.done]
    try:
        with contextlib.ExitStack() as stack:
            if name == "sqlite":
                url = f"sqlite:///{tmp / 'tables.db'}"
            else:
                url = stack.enter_context(fresh_postgres_database())  # skips if unreachable
            live = stack.enter_context(running_coordinator(url, tmp, converter=False))
            state.live.set_result(live)
            with live.http(live.user_token) as h:
                r = h.post("/tables", json={"space": "ofa-proxyless", **PARAMS, "settings": QUICK})
            assert r.status_code == 202, r.text
            state.posted.set_result(r.json())

            def on_update(t: TablePublic) -> None:
                state.seen.append(t.progress.done)
                if stop.is_set():
                    raise RuntimeError("the module ended before the table was built")

            with live.client() as c:
                state.done.set_result(
                    c.wait_table(r.json()["id"], timeout=600, on_update=on_update)
                )
            stop.wait()
    except BaseException as exc:  # handed to the fixtures that wait on these futures
        for f in futures:
            if not f.done():
                f.set_exception(exc)


@pytest.fixture(scope="module")
def backends(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, _Backend]]:
    """Every backend this session selected in this module, each started (and its table build
    posted) at once in a thread of its own; the coordinators stop with the module."""
    wanted = {
        params["backend"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and "backend" in (params := getattr(getattr(item, "callspec", None), "params", {}))
    }
    stop = threading.Event()
    states = {name: _Backend() for name in sorted(wanted)}
    threads = [
        threading.Thread(
            target=_serve_and_build,
            args=(name, tmp_path_factory.mktemp(f"tables-{name}"), state, stop),
            daemon=True,
        )
        for name, state in states.items()
    ]
    for t in threads:
        t.start()
    try:
        yield states
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def live(backend: str, backends: dict[str, _Backend]) -> Live:
    """This module's private coordinator (+ agent) of ``backend`` (shadows the session's)."""
    return backends[backend].live.result(timeout=180)  # raises its start's skip or error


@pytest.fixture(scope="module")
def table(live: Live, backends: dict[str, _Backend], backend: str) -> TablePublic:
    """The shared table of this backend, built through POST /tables and waited for."""
    state = backends[backend]
    body: dict[str, Any] = dict(state.posted.result(timeout=60))
    assert body["status"] == "building" and body["progress"]["total"] == 103 + N
    assert body["reused"] is False
    assert 0 <= body["progress"]["done"] < body["progress"]["total"]
    done = state.done.result(timeout=660)
    assert done.status == "succeeded", (done.error, done.failed_blocks[:3])
    assert len(set(state.seen)) > 2, "progress did not move while building"
    return done


def test_spaces_need_a_token_and_list_the_builtins(live: Live) -> None:
    with live.http() as h:
        assert h.get("/spaces").status_code == 401
        assert h.post("/tables", json={"space": "fbnet"}).status_code == 401
    with live.client() as c:
        spaces = {s.name: s for s in c.spaces()}
    assert set(spaces) == {"ofa-proxyless", "ofa-mbv3", "fbnet"}
    assert spaces["ofa-proxyless"].num_unique_blocks == 103


def test_build_progress_and_quality_report(live: Live, table: TablePublic) -> None:
    p = table.progress
    assert (p.blocks_done, p.blocks_total, p.blocks_failed) == (103, 103, 0)
    assert (p.networks_done, p.networks_total, p.done, p.total) == (N, N, 103 + N, 103 + N)
    assert table.device == live.agent_name and table.runtime == "onnxruntime"
    assert table.settings["measure"]["min_runs"] == QUICK["min_runs"]
    q = table.quality
    assert q is not None and q.n == N and q.lut_sum is not None and q.lut_sum.n == N
    for s in (q, q.lut_sum):
        assert 0 <= s.acc5 <= s.acc10 <= 1 and s.rmspe >= 0
        assert s.spearman is not None and -1 <= s.spearman <= 1
    assert q.predictor in ("lut_sum", "linear") and (q.predictor == "linear") == bool(
        table.calibration
    )
    assert table.build_seconds and table.build_seconds > 0
    with live.client() as c:  # generated block / network models stay out of the user's list
        assert all(m.kind == "user" for m in c.models())
        assert [t.id for t in c.tables()].count(table.id) == 1


def test_exports_json_csv_and_ofa_yaml_agree_with_predict(live: Live, table: TablePublic) -> None:
    with live.client() as c:
        exp = c.table_export(table.id)
        rows = c.export_table(table.id, "csv").splitlines()
        ofa = yaml.safe_load(c.export_table(table.id, "ofa-yaml"))
        archs = [v["arch"] for v in exp.validation]
        pred = c.predict(table.id, archs)
    assert len(exp.entries) == 103 and len(exp.validation) == N
    assert all(e.mean > 0 and e.count > 0 and e.var >= 0 for e in exp.entries.values())
    assert rows[0].startswith("key,ofa_key,kind") and len(rows) == 1 + 103
    assert all(",succeeded," in r for r in rows[1:])
    assert len(ofa) == 103
    some = next(iter(ofa.values()))
    assert set(some) == {"mean", "count", "var"}
    # OFA's own logic (sum lut[ofa_key]["mean"]) gives the same sums as the API's lut_sum_ms
    for arch, s, v in zip(archs, pred.lut_sum_ms, exp.validation, strict=True):
        assert lut_sum_ofa_style(SPACE, arch, ofa, RES) == pytest.approx(s, rel=1e-12)
        assert v["lut_sum_ms"] == pytest.approx(s, rel=1e-12)


def test_predict_server_and_sdk_local(live: Live, table: TablePublic) -> None:
    rng = random.Random(7)
    archs = [SPACE.sample(rng) for _ in range(200)]
    with live.client() as c:
        server = c.predict(table.id, archs)
        local = c.latency_table(table.id)
        assert c.latency_table(table.id) is local  # downloaded once
        with pytest.raises(LatencyLabError) as bad:
            c.predict(table.id, [{"ks": [3] * 20, "e": [3] * 21, "d": [2] * 6}])
        assert bad.value.status_code == 422 and "ks must have 21 entries" in bad.value.detail
        with pytest.raises(LatencyLabError) as missing:
            c.predict(10**6, archs[:1])
        assert missing.value.status_code == 404
    lat, lut = local.predict(archs)
    assert lat == pytest.approx(server.latency_ms, rel=1e-12)
    assert lut == pytest.approx(server.lut_sum_ms, rel=1e-12)
    cal = table.calibration
    for y, x in zip(server.latency_ms, server.lut_sum_ms, strict=True):
        assert y == pytest.approx(cal["a"] * x + cal["b"] if cal else x, rel=1e-9)
    assert server.predictor == table.predictor


def test_identical_request_returns_the_table_and_cli_shows_it(
    live: Live, table: TablePublic
) -> None:
    with live.client() as c:
        again = c.create_table("ofa-proxyless", **PARAMS)
    assert again.id == table.id and again.status == "succeeded" and again.reused
    env = _env({"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token})
    cli = [sys.executable, "-m", "latencylab", "table"]
    build = [*cli, "build", "--space", "ofa-proxyless", "--resolution", str(RES)]
    out = subprocess.run(
        [*build, "--validate-n", str(N), "--json"], cwd=REPO, env=env, capture_output=True
    )
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["id"] == table.id
    out = subprocess.run([*cli, "show", str(table.id)], cwd=REPO, env=env, capture_output=True)
    assert out.returncode == 0 and b"lut_sum" in out.stdout, out.stderr.decode()


def test_cli_table_predict_at_80_columns(live: Live, table: TablePublic, tmp_path: Path) -> None:
    """``latencylab table predict`` with --arch, --file and --random, as the API predicts."""
    env = _env(
        {"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token, "COLUMNS": "80"}
    )

    def predict(*args: str) -> subprocess.CompletedProcess[str]:
        res = cli("table", "predict", str(table.id), *args, env=env, timeout=60)
        assert "Traceback" not in res.stdout + res.stderr, res.stderr
        return res

    archs = [SPACE.sample(random.Random(i)) for i in range(3)]
    with live.client() as c:
        expected = c.predict(table.id, archs)
    one = predict("--arch", json.dumps(archs[0]), "--json")
    assert one.returncode == 0, one.stderr
    got = json.loads(one.stdout)
    assert got["predictor"] == table.predictor and got["predictions"][0]["arch"] == archs[0]
    assert got["predictions"][0]["latency_ms"] == pytest.approx(expected.latency_ms[0], rel=1e-12)
    assert got["predictions"][0]["lut_sum_ms"] == pytest.approx(expected.lut_sum_ms[0], rel=1e-12)

    file = tmp_path / "archs.json"
    file.write_text(json.dumps(archs))
    shown = predict("--file", str(file))
    assert shown.returncode == 0, shown.stderr
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    assert "…" not in shown.stdout
    for y, s in zip(expected.latency_ms, expected.lut_sum_ms, strict=True):
        assert f"{y:.3f}" in shown.stdout and f"{s:.3f}" in shown.stdout
    wide = predict("--file", str(file), "--wide")
    assert json.dumps(archs[0], separators=(",", ":")) in wide.stdout

    rnd = predict("--random", "5", "--seed", "3", "--json")
    assert rnd.returncode == 0, rnd.stderr
    sampled = [p["arch"] for p in json.loads(rnd.stdout)["predictions"]]
    rng = random.Random(3)
    assert sampled == [SPACE.sample(rng) for _ in range(5)]

    none = predict()
    assert none.returncode == 2 and "--arch" in none.stderr and "--random" in none.stderr
    broken = predict("--arch", "{ks: 3}")
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    short = {"ks": [3] * 20, "e": [3] * 21, "d": [2] * 6}
    wrong = predict("--arch", json.dumps(short))
    assert wrong.returncode == 2 and "ks must have 21 entries" in wrong.stderr


def _entry_sql(live: Live, sql: str, **params: object) -> int:
    engine = create_engine(live.database_url)
    try:
        with engine.begin() as conn:
            return int(conn.execute(text(sql), params).rowcount)
    finally:
        engine.dispose()


def test_failed_block_is_recorded_then_a_resumed_build_remeasures_only_it(
    live: Live, table: TablePublic
) -> None:
    key = SPACE.expand(RES)[40].key
    # forget one measured block of this scope; a build whose measurements cannot finish fails it
    assert _entry_sql(live, "UPDATE table_entries SET status='pending' WHERE block_key=:k", k=key)
    broken = {**QUICK, "timeout_s": 0.001}
    with live.client() as c:
        t = c.create_table(
            "ofa-proxyless", **{**PARAMS, "validate_n": 0}, settings=broken, fresh=True
        )
        assert t.id != table.id and t.progress.blocks_reused == 102
        failed = c.wait_table(t.id, timeout=120)
        assert failed.status == "failed" and failed.progress.blocks_failed == 1
        assert [b.key for b in failed.failed_blocks] == [key]
        assert failed.failed_blocks[0].error and "1 block(s) failed" in (failed.error or "")
        with pytest.raises(LatencyLabError) as incomplete:
            c.predict(failed.id, [SPACE.sample()])
        assert incomplete.value.status_code == 409
        # a new build in the same scope reuses the 102 and re-measures only the failed one
        ok = c.create_table(
            "ofa-proxyless", **{**PARAMS, "validate_n": 0}, settings=QUICK, fresh=True
        )
        assert ok.progress.blocks_reused == 102 and ok.progress.blocks_done == 102
        done = c.wait_table(ok.id, timeout=120)
        assert done.status == "succeeded" and done.quality is None
        assert done.progress.blocks_done == 103 and done.progress.blocks_failed == 0
        assert c.table(failed.id).failed_blocks == []  # the shared entry is measured now
        resumed = c.resume_table(failed.id)
        assert resumed.status == "succeeded"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"space": "nope"}, 422, "valid names"),
        ({"space": "ofa-proxyless", "resolution": 130}, 422, "not allowed"),
        ({"space": "ofa-proxyless", "device": "no-such-device"}, 422, "no registered device"),
        ({"space": "ofa-proxyless", "runtime": "tflite"}, 422, "ONNX"),
        ({"space": "fbnet", "device": "class:gpu"}, 422, "no registered device"),
    ],
)
def test_bad_requests_are_refused_clearly(
    live: Live, body: dict[str, object], status: int, needle: str
) -> None:
    with live.http(live.user_token) as h:
        r = h.post("/tables", json=body)
    assert r.status_code == status and needle in r.json()["detail"], r.text


def test_unknown_format_and_table_are_refused(live: Live, table: TablePublic) -> None:
    with live.http(live.user_token) as h:
        assert h.get(f"/tables/{table.id}", params={"format": "xml"}).status_code == 422
        assert h.get("/tables/999999").status_code == 404
        assert h.post("/tables/999999/resume").status_code == 404


def test_quality_figures_and_calibration_choice() -> None:
    from server.store.table_quality import assess, fit_linear, ranks, score, spearman

    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert fit_linear([1, 2, 3], [3, 5, 7]) == pytest.approx((2.0, 1.0))
    s = score([1.04, 2.19, 3.0], [1.0, 2.0, 3.0])  # errors +4%, +9.5%, 0%
    assert (s["acc5"], s["acc10"]) == pytest.approx((2 / 3, 1.0))
    assert s["rmspe"] == pytest.approx(((0.04**2 + 0.095**2) / 3) ** 0.5)
    # a sum biased by +20% and 0.5 ms: the linear calibration wins out of sample
    lut = [1.0 + 0.1 * i for i in range(20)]
    meas = [(x - 0.5) / 1.2 * (1 + 0.01 * (-1) ** i) for i, x in enumerate(lut)]
    quality, cal = assess(lut, meas)
    assert quality is not None and cal is not None and quality["predictor"] == "linear"
    assert quality["lut_sum"]["acc10"] < 0.5 and quality["acc10"] == 1.0
    assert len(quality["points"]) == 20
    assert cal["a"] == pytest.approx(1 / 1.2, rel=0.02)
    # an unbiased sum keeps the plain predictor
    quality, cal = assess(meas, meas)
    assert quality is not None and cal is None and quality["predictor"] == "lut_sum"
