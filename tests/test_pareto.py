"""The Pareto endpoint over real HTTP, and the pure front computation.

Results are seeded without measuring: a ghost agent (``tests.test_protocol.Ghost``, the
public agent routes) leases each job and reports a result with chosen latencies, so every
case is exact. Each test uses its own ghost device, so tests (and the other modules sharing
the session's coordinator) do not see each other's points.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from latencylab.pareto import pareto_front
from tests.conftest import Live
from tests.test_protocol import RESULT, Ghost


def brute_front(points: list[tuple[Any, float, float]]) -> set[Any]:
    """The definition, O(n²): dominated = another point at least as good in both, better in one."""
    return {
        k
        for k, lat, acc in points
        if not any(
            lat2 <= lat and acc2 >= acc and (lat2 < lat or acc2 > acc) for _, lat2, acc2 in points
        )
    }


# ----------------------------------------------------------------------------- pure function
def test_front_ties_equal_latency_and_order() -> None:
    pts = [
        ("tie-a", 1.0, 72.0),
        ("slow-same-acc", 2.0, 72.0),
        ("tie-b", 1.0, 72.0),  # identical to tie-a: neither dominates, both on the front
        ("mid", 2.0, 76.0),
        ("mid-worse", 2.0, 75.0),  # equal latency, less accurate
        ("big", 4.0, 80.0),
        ("huge", 8.0, 80.0),  # equal accuracy, slower
        ("worse-slow-low", 5.0, 10.0),
    ]
    assert pareto_front(pts) == ["tie-a", "tie-b", "mid", "big"]
    assert set(pareto_front(pts)) == brute_front(pts)


def test_front_edge_cases() -> None:
    assert pareto_front([]) == []
    assert pareto_front([(1, 3.0, 50.0)]) == [1]
    assert pareto_front([(1, math.nan, 50.0), (2, 3.0, math.inf), (3, 9.0, 1.0)]) == [3]
    # A faster, more accurate point dominates everything else.
    assert pareto_front([(1, 5.0, 70.0), (2, 1.0, 90.0), (3, 3.0, 80.0)]) == [2]


def test_front_matches_the_definition_on_random_sets() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(0, 14)
        # Small integer grids force many ties in latency, accuracy or both.
        pts = [(i, float(rng.randint(1, 6)), float(rng.randint(60, 66))) for i in range(n)]
        front = pareto_front(pts)
        assert set(front) == brute_front(pts)
        assert len(front) == len(set(front))
        lats = [dict((k, lat) for k, lat, _ in pts)[k] for k in front]
        assert lats == sorted(lats)


# ----------------------------------------------------------------------------- seeding
def stats(p50: float, p90: float | None = None) -> dict[str, Any]:
    p90 = p50 * 1.1 if p90 is None else p90
    return {
        **RESULT,
        "latency_ms": {
            "min": p50 * 0.9,
            "mean": p50,
            "p50": p50,
            "p90": p90,
            "p95": p90,
            "p99": p90 * 1.05,
            "max": p90 * 1.1,
            "std": p50 * 0.05,
            "cov": 0.05,
        },
        "times_ms": [p50 * 0.95, p50, p50 * 1.02, p90],
    }


class Seeder:
    """Uploads models and reports chosen results for them through ghost devices."""

    def __init__(self, live: Live, model_file: Path) -> None:
        self.live = live
        self.bytes = model_file.read_bytes()
        self.http = live.http(live.user_token)

    def model(self, name: str, accuracy: dict[str, float], tags: list[str] | None = None) -> int:
        meta: dict[str, Any] = {"accuracy": accuracy}
        if tags:
            meta["tags"] = tags
        r = self.http.post(
            "/models",
            files={"file": ("m.onnx", self.bytes)},
            data={"name": name, "metadata": json.dumps(meta)},
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def result(
        self,
        ghost: Ghost,
        model_id: int,
        result: dict[str, Any],
        *,
        precision: str = "fp32",
        batch_size: int = 1,
    ) -> int:
        target = {
            "runtime": "onnxruntime",
            "device": ghost.name,
            "precision": precision,
            "batch_size": batch_size,
        }
        r = self.http.post("/benchmarks", json={"model_id": model_id, "targets": [target]})
        assert r.status_code == 202, r.text
        job = ghost.lease()
        assert job is not None and job["id"] == r.json()["jobs"][0]["id"]
        rep = ghost.report(job["id"], result)
        assert rep.status_code == 201, rep.text
        return int(r.json()["id"])


# (name, p50, top1, tags); "no-top1" carries only mAP.
SET = [
    ("tie-a", 1.0, 72.0, ["mobile"]),
    ("tie-b", 1.0, 72.0, ["mobile"]),
    ("slow-same-acc", 2.0, 72.0, ["mobile"]),
    ("mid", 2.0, 76.0, ["mobile", "server"]),
    ("mid-worse", 2.0, 75.0, ["server"]),
    ("big", 4.0, 80.0, ["server"]),
    ("huge", 8.0, 80.0, ["server"]),
]


@pytest.fixture
def seeded(live: Live, model_files: dict[str, Path]) -> tuple[Ghost, dict[str, int], Seeder]:
    ghost = Ghost(live)
    seeder = Seeder(live, model_files["mlp"])
    ids = {}
    for name, p50, top1, tags in SET:
        ids[name] = seeder.model(name, {"top1": top1, "top5": top1 + 15}, tags)
        seeder.result(ghost, ids[name], stats(p50))
    ids["no-top1"] = seeder.model("no-top1", {"mAP": 33.0})
    seeder.result(ghost, ids["no-top1"], stats(0.5))
    return ghost, ids, seeder


def get(live: Live, **params: Any) -> Any:
    with live.http(live.user_token) as c:
        return c.get("/pareto", params=params)


# ----------------------------------------------------------------------------- the endpoint
def test_pareto_front_over_http(live: Live, seeded: tuple[Ghost, dict[str, int], Seeder]) -> None:
    ghost, ids, _ = seeded
    r = get(live, device=ghost.name, runtime="onnxruntime", precision="fp32", batch_size=1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric"] == "top1" and body["device"] == ghost.name
    assert sorted(body["metrics"]) == ["mAP", "top1", "top5"]
    by_name = {p["name"]: p for p in body["points"]}
    assert set(by_name) == {name for name, *_ in SET}  # "no-top1" has no top1: absent
    expected = brute_front([(ids[n], lat, acc) for n, lat, acc, _ in SET])
    assert set(body["front"]) == expected
    assert body["front"] == [ids["tie-a"], ids["tie-b"], ids["mid"], ids["big"]]
    for name, p in by_name.items():
        assert p["on_front"] == (p["model_id"] in expected), name
        assert p["model_id"] == ids[name]
    mid = by_name["mid"]
    assert mid["latency_ms"] == 2.0 and mid["accuracy"] == 76.0
    assert mid["p90_ms"] == pytest.approx(2.2) and mid["size"] > 0
    assert mid["tags"] == ["mobile", "server"] and mid["result_id"] and mid["benchmark_id"]
    lats = [p["latency_ms"] for p in body["points"]]
    assert lats == sorted(lats)


def test_metric_and_tag_filters(live: Live, seeded: tuple[Ghost, dict[str, int], Seeder]) -> None:
    ghost, ids, _ = seeded
    body = get(live, device=ghost.name, runtime="onnxruntime", metric="mAP").json()
    assert [p["model_id"] for p in body["points"]] == [ids["no-top1"]]
    assert body["front"] == [ids["no-top1"]]
    body = get(live, device=ghost.name, runtime="onnxruntime", metric="nope").json()
    assert body["points"] == [] and body["front"] == [] and "top1" in body["metrics"]
    body = get(live, device=ghost.name, runtime="onnxruntime", tag="server").json()
    names = {p["name"] for p in body["points"]}
    assert names == {"mid", "mid-worse", "big", "huge"}
    assert body["front"] == [ids["mid"], ids["big"]]
    sub = [ids["slow-same-acc"], ids["mid-worse"], ids["huge"]]
    body = get(
        live, device=ghost.name, runtime="onnxruntime", model_ids=",".join(map(str, sub))
    ).json()
    assert body["front"] == [ids["mid-worse"], ids["huge"]]  # tie-a, mid, big filtered out


def test_latest_succeeded_result_wins_and_targets_are_separate(
    live: Live, seeded: tuple[Ghost, dict[str, int], Seeder]
) -> None:
    ghost, ids, seeder = seeded
    seeder.result(ghost, ids["huge"], stats(0.1))  # newer, now fastest: dominates the ties
    failed = {"status": "failed", "error": "out of memory", "times_ms": []}
    seeder.result(ghost, ids["big"], failed)  # a newer failure does not replace a success
    seeder.result(ghost, ids["mid"], stats(0.05), precision="int8")  # another target
    seeder.result(ghost, ids["mid"], stats(0.07), batch_size=8)
    body = get(live, device=ghost.name, runtime="onnxruntime").json()
    by_name = {p["name"]: p for p in body["points"]}
    assert by_name["huge"]["latency_ms"] == 0.1 and by_name["big"]["latency_ms"] == 4.0
    assert by_name["mid"]["latency_ms"] == 2.0
    assert body["front"] == [ids["huge"]]
    int8 = get(live, device=ghost.name, runtime="onnxruntime", precision="int8").json()
    assert [p["model_id"] for p in int8["points"]] == [ids["mid"]]
    b8 = get(live, device=ghost.name, runtime="onnxruntime", batch_size=8).json()
    assert [p["latency_ms"] for p in b8["points"]] == [0.07]


def test_unknown_device_bad_params_and_empty(live: Live) -> None:
    r = get(live, device="no-such-device", runtime="onnxruntime")
    assert r.status_code == 404
    assert "no-such-device" in r.json()["detail"] and "registered" in r.json()["detail"]
    assert get(live, runtime="onnxruntime").status_code == 422  # device is required
    ghost = Ghost(live)  # registered, nothing measured
    r = get(live, device=ghost.name, runtime="onnxruntime")
    assert r.status_code == 200
    assert r.json()["points"] == [] and r.json()["front"] == []
    bad = [
        {"runtime": "caffe"},
        {"precision": "fp8"},
        {"batch_size": 0},
        {"model_ids": "1,x"},
        {"metric": ""},
    ]
    for params in bad:
        r = get(live, device=ghost.name, **{"runtime": "onnxruntime", **params})
        assert r.status_code == 422, (params, r.text)
    with live.http() as c:
        assert c.get("/pareto", params={"device": ghost.name}).status_code == 401
    with live.http(live.agent_token) as c:
        assert c.get("/pareto", params={"device": ghost.name}).status_code == 403


def test_options_list_targets_metrics_and_tags(
    live: Live, seeded: tuple[Ghost, dict[str, int], Seeder]
) -> None:
    ghost, _, _ = seeded
    with live.http(live.user_token) as c:
        body = c.get("/pareto/options").json()
    mine = [t for t in body["targets"] if t["device"] == ghost.name]
    assert mine == [
        {
            "device": ghost.name,
            "runtime": "onnxruntime",
            "precision": "fp32",
            "batch_size": 1,
            "models": len(SET) + 1,
        }
    ]
    assert {"top1", "top5", "mAP"} <= set(body["metrics"])
    assert {"mobile", "server"} <= set(body["tags"])


def test_pareto_front_is_invariant_to_input_order() -> None:
    pts = [(n, lat, acc) for n, lat, acc, _ in SET]
    fronts = {
        tuple(pareto_front(list(p))) for p in itertools.islice(itertools.permutations(pts), 200)
    }
    # Tied identical points keep input order among themselves; the set never changes.
    assert {frozenset(f) for f in fronts} == {frozenset(brute_front(pts))}


# ----------------------------------------------------------------------------- the dashboard
def test_dashboard_pages_and_the_plotly_bundle_are_served(live: Live) -> None:
    """Every page route (deep links too) gets the single page; Plotly.js comes from the
    installed ``plotly`` package, with no token and no CDN."""
    with httpx.Client(base_url=live.url, timeout=30) as c:
        for path in (
            "/",
            "/pareto?device=x&log=1",
            "/models",
            "/models/12345",
            "/devices",
            "/tables",
        ):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert '<script type="module" src="/static/js/app.js">' in r.text, path
            assert "/static/vendor/plotly.min.js" in r.text and 'src="http' not in r.text
        for asset in ("/static/js/app.js", "/static/js/pages/pareto.js", "/static/style.css"):
            r = c.get(asset)
            assert r.status_code == 200 and r.headers["cache-control"] == "no-cache", asset
        js = c.get("/static/vendor/plotly.min.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert js.content.startswith(b"/**\n* plotly.js v") and len(js.content) > 1_000_000
        assert b"window.Plotly" in js.content[-200:]


# ----------------------------------------------------------------------------- overlaid series
def test_each_series_has_its_own_front(
    live: Live, seeded: tuple[Ghost, dict[str, int], Seeder]
) -> None:
    """The dashboard overlays series (device x runtime x precision) with one GET /pareto each:
    the same models measured on a second runtime form a front of their own, checked against
    the brute-force definition, and neither series' points leak into the other's."""
    ghost, ids, seeder = seeded
    r = ghost.http.post(
        "/agents/register",
        json={
            "name": ghost.name,
            "class": "cpu",
            "runtimes": {"onnxruntime": "1.0", "pytorch": "2.0"},
        },
    )
    assert r.status_code == 200, r.text
    # On pytorch the ranking changes: the big models are relatively faster, the ties split.
    second = {"tie-a": 1.5, "tie-b": 0.9, "slow-same-acc": 3.0, "mid": 2.5, "mid-worse": 2.4}
    second |= {"big": 2.4, "huge": 9.0}
    for name, p50 in second.items():
        target = {"runtime": "pytorch", "device": ghost.name}
        b = seeder.http.post("/benchmarks", json={"model_id": ids[name], "targets": [target]})
        assert b.status_code == 202, b.text
        job = ghost.lease()
        assert job is not None and job["runtime"] == "pytorch"
        assert ghost.report(job["id"], stats(p50)).status_code == 201
    accuracy = {name: top1 for name, _, top1, _ in SET}
    series = {
        "onnxruntime": {ids[n]: (lat, accuracy[n]) for n, lat, _, _ in SET},
        "pytorch": {ids[n]: (lat, accuracy[n]) for n, lat in second.items()},
    }
    fronts = {}
    for runtime, points in series.items():
        body = get(live, device=ghost.name, runtime=runtime).json()
        assert body["runtime"] == runtime and body["device"] == ghost.name
        got = {p["model_id"]: (p["latency_ms"], p["accuracy"]) for p in body["points"]}
        assert got == points, runtime
        expected = brute_front([(k, lat, acc) for k, (lat, acc) in points.items()])
        assert set(body["front"]) == expected, runtime
        assert all(p["on_front"] == (p["model_id"] in expected) for p in body["points"])
        fronts[runtime] = body["front"]
    assert fronts["pytorch"] == [ids["tie-b"], ids["big"]]
    assert fronts["onnxruntime"] == [ids["tie-a"], ids["tie-b"], ids["mid"], ids["big"]]
    with live.http(live.user_token) as c:
        targets = c.get("/pareto/options").json()["targets"]
    mine = {t["runtime"]: t["models"] for t in targets if t["device"] == ghost.name}
    assert mine == {"onnxruntime": len(SET) + 1, "pytorch": len(second)}
