"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless.

One coordinator (SQLite) with one real agent for the module, one browser for the module.
Pareto points on two simulated devices are seeded through the public agent routes with
chosen latencies; the front the page shows is checked against a brute-force computation
here. A small real latency table (ofa-proxyless at 128 px, 5 validation networks, quick
settings) is built from the tables page on the agent (about a minute). Screenshots of every
page land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from agents.measure.stats import summarize
from tests.conftest import (
    AGENT_ENV,
    FAST,
    REPO,
    SERVER_ENV,
    Live,
    _env,
    _spawn_worker,
    _stop,
    _wait_for,
    free_port,
)

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-artifacts" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
QUICK = {"warmup_runs": 3, "min_runs": 20, "min_duration_s": 0.2, "max_duration_s": 1.0}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium); "
    "CI installs it",
)


def brute_front(points: dict[int, tuple[float, float]]) -> set[int]:
    """Independent of the server: a point is on the front unless another is at least as fast
    and at least as accurate and strictly better in one."""
    return {
        k
        for k, (lat, acc) in points.items()
        if not any(la <= lat and ac >= acc and (la < lat or ac > acc) for la, ac in points.values())
    }


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A coordinator on SQLite and a real local agent, for this module only."""
    data_dir = tmp_path_factory.mktemp("browser")
    db = f"sqlite:///{data_dir / 'latencylab.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent", "--port", str(port)]
    env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": db, "LATENCYLAB_OFFLINE_AFTER_S": "30"})
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)], cwd=REPO, env=env, stdout=fh, stderr=fh
        )
    agent = None
    try:
        _wait_for(url, proc, log)
        admin = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            user = c.post("/tokens", json={"scope": "user", "name": "browser tests"}).json()
            agent_tok = c.post("/tokens", json={"scope": "agent", "name": "local agent"}).json()
        name = f"local-cpu-{uuid.uuid4().hex[:4]}"
        acmd = [sys.executable, "-m", "latencylab", "agent", "--server", url]
        acmd += ["--token", agent_tok["token"], "--name", name]
        with (data_dir / "agent.log").open("wb") as fh:
            agent = subprocess.Popen(
                [*acmd, "--data-dir", str(data_dir / "agent")],
                cwd=REPO,
                env=_env(AGENT_ENV),
                stdout=fh,
                stderr=fh,
            )
        live = Live(url, data_dir, admin, user["token"], agent_tok["token"], db, name)
        with live.http(live.user_token) as c:
            deadline = time.monotonic() + 60
            while not any(d["name"] == name for d in c.get("/devices").json()):
                assert agent.poll() is None and time.monotonic() < deadline, "agent did not start"
                time.sleep(0.2)
        yield live
    finally:
        if agent is not None:
            _stop(agent)
        _stop(proc)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium (fresh user-data dir) for the whole module."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 900},
        )
        ctx.set_default_timeout(20_000)
        try:
            yield ctx
        finally:
            ctx.close()


class Page:
    """A tab that records page errors; ``signed_in`` puts the token in sessionStorage."""

    def __init__(self, context: Any, server: Live, signed_in: bool = True) -> None:
        self.server = server
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        if signed_in:
            tok = json.dumps(server.user_token)
            self.page.add_init_script(f"sessionStorage.setItem('latencylab.token', {tok})")

    def open(self, path: str) -> Any:
        self.page.goto(self.server.url + path)
        self.ready()
        return self.page

    def ready(self) -> None:
        self.page.wait_for_selector("body[data-ready='1']")

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(300)  # let Plotly finish its transitions
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert not self.errors, self.errors


class SimDevice:
    """A device driven through the public agent routes, reporting chosen latencies."""

    def __init__(self, server: Live, name: str, cls: str) -> None:
        with server.http(server.admin_token) as c:
            tok = c.post("/tokens", json={"scope": "agent", "name": name}).json()["token"]
        self.name = name
        self.http = server.http(tok)
        r = self.http.post(
            "/agents/register",
            json={"name": name, "class": cls, "runtimes": {"onnxruntime": "1.20.1"}},
        )
        assert r.status_code == 200, r.text
        self.id = r.json()["id"]

    def measure(self, user: httpx.Client, model_id: int, result: dict[str, Any]) -> None:
        target = {"runtime": "onnxruntime", "device": self.name}
        r = user.post("/benchmarks", json={"model_id": model_id, "targets": [target]})
        assert r.status_code == 202, r.text
        job = self.http.post(f"/agents/{self.id}/lease").json()
        rep = self.http.post(f"/agents/{self.id}/jobs/{job['id']}/report", json={"result": result})
        assert rep.status_code == 201, rep.text


def measured(p50: float) -> dict[str, Any]:
    p90 = p50 * 1.15
    lat = {"min": p50 * 0.9, "mean": p50 * 1.02, "p50": p50, "p90": p90, "p95": p90 * 1.02}
    lat |= {"p99": p90 * 1.1, "max": p90 * 1.3, "std": p50 * 0.06, "cov": 0.06}
    times = [p50 * (0.92 + 0.004 * i) for i in range(40)] + [p90, p90 * 1.1]
    return {"status": "succeeded", "latency_ms": lat, "runs": len(times), "times_ms": times}


# name: (latency on A, latency on B or None, top1, tags); ties and equal latencies on purpose
SEED: dict[str, tuple[float, float | None, float, list[str]]] = {
    "nano-a": (1.0, 3.0, 70.0, ["mobile"]),
    "nano-b": (1.0, 3.2, 70.0, ["mobile"]),
    "small": (2.0, 2.5, 73.5, ["mobile"]),
    "small-slow": (2.0, 5.0, 72.0, ["mobile"]),
    "medium": (3.5, 4.0, 76.0, ["mobile", "server"]),
    "medium-bloat": (5.0, 4.1, 76.0, ["server"]),
    "large": (7.0, 6.0, 79.5, ["server"]),
    "xl": (12.0, None, 80.5, ["server"]),
}


@pytest.fixture(scope="module")
def seeded(server: Live, model_files: dict[str, Path]) -> dict[str, Any]:
    a = SimDevice(server, f"sim-edge-a-{uuid.uuid4().hex[:4]}", "jetson")
    b = SimDevice(server, f"sim-phone-b-{uuid.uuid4().hex[:4]}", "phone")
    files = list(model_files.values())
    ids: dict[str, int] = {}
    with server.http(server.user_token) as c:
        for i, (name, (lat_a, lat_b, top1, tags)) in enumerate(SEED.items()):
            acc = {"top1": top1, "top5": round(top1 + 16.5, 1)}
            if name in ("large", "xl"):  # a detection-style metric on two models only
                acc["mAP"] = round(top1 / 2, 1)
            meta = {"accuracy": acc, "tags": tags}
            f = files[i % len(files)]
            r = c.post(
                "/models",
                files={"file": (f.name, f.read_bytes())},
                data={"name": name, "metadata": json.dumps(meta)},
            )
            ids[name] = r.json()["id"]
            a.measure(c, ids[name], measured(lat_a))
            if lat_b is not None:
                b.measure(c, ids[name], measured(lat_b))
        r = c.post(
            "/models",
            files={"file": ("broken.onnx", files[0].read_bytes())},
            data={"name": "broken", "metadata": json.dumps({"accuracy": {"mAP": 30.0}})},
        )
        ids["broken"] = r.json()["id"]
        # One job left in device B's queue (nobody leases it): queue depth and "queued".
        target = {"runtime": "onnxruntime", "device": b.name}
        assert c.post("/benchmarks", json={"model_id": ids["xl"], "targets": [target]}).is_success
        error = "runtime error: unsupported operator 'FancyAttention' (opset 21)"
        a.measure(c, ids["broken"], {"status": "failed", "error": error})
    return {"a": a.name, "b": b.name, "ids": ids, "error": error}


def chart_ids(page: Any, chart: str, trace: str) -> set[int]:
    """Model ids of one trace ("on the front" / "dominated") of a Plotly chart on the page."""
    ids = page.evaluate(
        """([chart, trace]) => {
            const gd = document.getElementById(chart);
            const t = gd.data.find((d) => d.name === trace);
            return t ? t.customdata.map((c) => c[3]) : [];
        }""",
        [chart, trace],
    )
    return set(ids)


def wait_pareto(page: Any) -> None:
    page.wait_for_selector("body[data-pareto-ready='1']")
    page.wait_for_function("document.getElementById('pareto-chart')?.data !== undefined")


def point_xy(page: Any, chart: str, model_id: int) -> tuple[float, float]:
    """Screen coordinates of a model's marker (linear axes)."""
    xy = page.evaluate(
        """([chart, id]) => {
            const gd = document.getElementById(chart);
            const fl = gd._fullLayout;
            for (const t of gd.data) {
                if (!t.mode.includes("markers")) continue;
                const i = t.customdata.findIndex((c) => c[3] === id);
                if (i < 0) continue;
                const box = gd.getBoundingClientRect();
                return [box.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[i]),
                        box.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i])];
            }
            return null;
        }""",
        [chart, model_id],
    )
    assert xy is not None, f"model {model_id} is not plotted"
    return xy[0], xy[1]


# ----------------------------------------------------------------------------- tests
def test_sign_in_upload_benchmark_and_see_the_result(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    # Two more real models measured by the agent (queued first; the UI's job runs after them).
    accuracy = {"mlp": 52.0, "resnet": 66.0}
    api_benches = {}
    with server.http(server.user_token) as c:
        for key, acc in accuracy.items():
            meta = json.dumps({"accuracy": {"top1": acc}, "tags": ["api"]})
            files = {"file": (f"{key}.onnx", model_files[key].read_bytes())}
            m = c.post("/models", files=files, data={"name": f"api-{key}", "metadata": meta})
            target = {"runtime": "onnxruntime", "device": server.agent_name}
            body = {"model_id": m.json()["id"], "targets": [target], "settings": QUICK}
            api_benches[m.json()["id"]] = c.post("/benchmarks", json=body).json()["id"]

    tab = Page(context, server, signed_in=False)
    page = tab.page
    page.goto(server.url + "/models")  # a deep link, signed out: the sign-in form
    page.wait_for_selector("form.signin")
    tab.shot("signin")
    page.fill("#token-input", "not-a-token")
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("form.signin [role=alert]:has-text('unknown token')")
    page.fill("#token-input", server.user_token)
    page.click("form.signin button[type=submit]")
    tab.ready()
    assert page.evaluate("sessionStorage.getItem('latencylab.token')") == server.user_token
    assert page.evaluate("localStorage.length") == 0

    # Upload with accuracy and tags; progress comes from XMLHttpRequest upload events.
    page.set_input_files("#upload-form input[name=file]", str(model_files["mbv2"]))
    page.fill("#upload-form input[name=name]", "ui-mbv2")
    page.fill("#upload-form input[name=accuracy]", "64.2")
    page.fill("#upload-form input[name=tags]", "ui, mobile")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/models/\d+\?uploaded=1$"))
    tab.ready()
    assert page.evaluate("document.body.dataset.uploadProgress") == "100"
    model_id = int(re.search(r"/models/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    assert page.inner_text("h1") == "ui-mbv2"

    # Benchmark it on the real local agent and follow the live progress.
    box = f"#bench-targets input[data-device='{server.agent_name}'][data-runtime='onnxruntime']"
    page.check(box)
    page.click("#bench-submit")
    page.wait_for_selector("#jobs .job")
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while (status := page.get_attribute("#jobs .job", "data-status")) != "succeeded":
        assert status != "failed", page.inner_text("#jobs")
        assert time.monotonic() < deadline, f"still {status}"
        if status not in seen:
            seen.append(status or "")
            if status == "running":
                tab.shot("model-benchmark-running")
        page.wait_for_timeout(150)
    assert {"queued", "running"} & set(seen), seen
    assert "done" in page.inner_text("#jobs .pipeline li.past >> nth=-1")
    page.wait_for_selector("#results tr[data-result-id]")
    page.wait_for_selector("#histogram .main-svg")
    page.wait_for_selector("#profile-chart .main-svg")
    marks = page.evaluate(
        "document.getElementById('histogram').layout.annotations.map(a => a.text)"
    )
    assert [m.split()[0] for m in marks] == ["p50", "p90", "p99"], marks
    assert "CPUExecutionProvider" in page.inner_text("#profile")
    tab.shot("model")

    # The result links to its target's Pareto page, where the model is on the front.
    page.click("#results tr[data-result-id] a:has-text('Pareto')")
    page.wait_for_url(re.compile(rf"/pareto\?device={server.agent_name}&runtime=onnxruntime"))
    tab.ready()
    wait_pareto(page)
    # The front over real measurements, recomputed here from each result's p50.
    measured_points = {}
    with server.http(server.user_token) as c:
        for mid, acc in [*zip(api_benches, accuracy.values(), strict=True), (model_id, 64.2)]:
            benches = c.get("/benchmarks", params={"model_id": mid}).json()
            assert benches[0]["status"] == "succeeded", benches[0]
            measured_points[mid] = (benches[0]["results"][0]["latency_ms"]["p50"], acc)
    front = brute_front(measured_points)
    assert chart_ids(page, "pareto-chart", "on the front") == front
    assert chart_ids(page, "pareto-chart", "dominated") == set(measured_points) - front
    rows = page.locator("#front-list tr[data-model-id]")
    assert rows.count() == len(front)
    tab.shot("pareto-local")
    tab.close()


def test_pareto_front_controls_and_compare(server: Live, context: Any, seeded: Any) -> None:
    ids, a, b = seeded["ids"], seeded["a"], seeded["b"]
    tab = Page(context, server)
    page = tab.open(f"/pareto?device={a}&runtime=onnxruntime&precision=fp32&batch_size=1")
    wait_pareto(page)
    on_a = {ids[n]: (v[0], v[2]) for n, v in SEED.items()}
    expected = brute_front(on_a)
    assert expected == {ids["nano-a"], ids["nano-b"], ids["small"], ids["medium"]} | {
        ids["large"],
        ids["xl"],
    }
    assert chart_ids(page, "pareto-chart", "on the front") == expected
    assert chart_ids(page, "pareto-chart", "dominated") == set(on_a) - expected
    rows = page.locator("#front-list tr[data-model-id]")
    assert {int(rows.nth(i).get_attribute("data-model-id")) for i in range(rows.count())} == (
        expected
    )
    tab.shot("pareto")

    # Hover shows name, p50 and p90, accuracy, size; a click opens the model.
    x, y = point_xy(page, "pareto-chart", ids["medium"])
    page.mouse.move(x, y)
    hover = page.locator(".hoverlayer .hovertext").first
    hover.wait_for()
    text = hover.text_content() or ""
    assert "medium" in text and "p50 3.500 ms" in text and "p90 4.025 ms" in text
    assert "top1 76.00" in text and "size" in text
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(rf"/models/{ids['medium']}$"))
    tab.ready()
    page.go_back()
    tab.ready()
    wait_pareto(page)

    # Log axis, tag and metric are kept in the query string.
    page.check("input[name=log]")
    page.wait_for_url(re.compile(r"log=1"))
    wait_pareto(page)
    assert page.evaluate("document.getElementById('pareto-chart').layout.xaxis.type") == "log"
    page.select_option("select[name=tag]", "server")
    page.wait_for_url(re.compile(r"tag=server"))
    wait_pareto(page)
    server_only = {ids[n]: (v[0], v[2]) for n, v in SEED.items() if "server" in v[3]}
    assert chart_ids(page, "pareto-chart", "on the front") == brute_front(server_only)
    page.select_option("select[name=tag]", "")
    wait_pareto(page)
    page.select_option("select[name=metric]", "mAP")
    page.wait_for_url(re.compile(r"metric=mAP"))
    wait_pareto(page)
    both = {ids["large"], ids["xl"]}
    assert (
        chart_ids(page, "pareto-chart", "on the front")
        | chart_ids(page, "pareto-chart", "dominated")
        == both
    )
    page.select_option("select[name=metric]", "top1")
    wait_pareto(page)

    # Two devices side by side: the models measured on both, each with its own front.
    page.select_option("select[name=compare]", b)
    page.wait_for_url(re.compile(rf"compare={b}"))
    wait_pareto(page)
    page.wait_for_selector("#pareto-chart-b .main-svg")
    common = {ids[n] for n, v in SEED.items() if v[1] is not None}
    on_b = {ids[n]: (v[1], v[2]) for n, v in SEED.items() if v[1] is not None}
    assert chart_ids(page, "pareto-chart", "on the front") == brute_front(
        {k: v for k, v in on_a.items() if k in common}
    )
    assert chart_ids(page, "pareto-chart-b", "on the front") == brute_front(on_b)
    assert page.locator("#compare-list tr[data-model-id]").count() == len(common)
    tab.shot("pareto-compare")

    # The URL alone restores the view (shareable).
    shared = page.url
    other = Page(context, server)
    p2 = other.open(shared.removeprefix(server.url))
    wait_pareto(p2)
    p2.wait_for_selector("#pareto-chart-b .main-svg")
    assert p2.input_value("select[name=compare]") == b and p2.is_checked("input[name=log]")
    assert chart_ids(p2, "pareto-chart-b", "on the front") == brute_front(on_b)
    other.close()
    tab.close()


def test_failures_show_their_message(server: Live, context: Any, seeded: Any) -> None:
    tab = Page(context, server)
    page = tab.open(f"/models/{seeded['ids']['broken']}")
    assert seeded["error"] in page.inner_text("#jobs .job-error")
    assert "failed" in page.inner_text("#results")
    assert seeded["error"] in page.inner_text("#result-detail")
    tab.close()


def test_flagged_points_are_marked_and_can_be_hidden(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    """A bimodal result stopped by max_duration gets an open red marker with its flags in the
    hover; a clean one keeps its filled marker; "hide flagged" takes the flagged one off."""
    dev = SimDevice(server, f"sim-flags-{uuid.uuid4().hex[:4]}", "cpu")
    rng = random.Random(0)
    clean = [rng.gauss(2.0, 0.02) for _ in range(300)]
    noisy = [
        rng.gauss(1.0, 0.03) if rng.random() < 0.5 else rng.gauss(2.0, 0.05) for _ in range(300)
    ]
    ids = {}
    with server.http(server.user_token) as c:
        for name, times, reason, top1 in (("clean", clean, "ci_converged", 75.0),
                                          ("noisy", noisy, "max_duration", 70.0)):  # fmt: skip
            meta = json.dumps({"accuracy": {"top1": top1}})
            files = {"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
            r = c.post("/models", files=files, data={"name": f"flag-{name}", "metadata": meta})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
            lat = summarize(times).model_dump()
            dev.measure(c, ids[name], {"status": "succeeded", "latency_ms": lat, "runs": len(times),
                                       "times_ms": times, "stop_reason": reason})  # fmt: skip
    tab = Page(context, server)
    page = tab.open(f"/pareto?device={dev.name}&runtime=onnxruntime")
    wait_pareto(page)
    marks = page.evaluate(
        """() => {
            const out = {};
            for (const t of document.getElementById("pareto-chart").data) {
                if (!t.mode.includes("markers")) continue;
                t.customdata.forEach((c, i) => { out[c[3]] = [t.marker.symbol[i], t.marker.color[i], c[5]]; });
            }
            return out;
        }"""
    )
    sym_noisy, color_noisy, hover_noisy = marks[str(ids["noisy"])]
    sym_clean, _, hover_clean = marks[str(ids["clean"])]
    assert sym_noisy.endswith("-open") and color_noisy == "#dc2626"
    assert not sym_clean.endswith("-open") and hover_clean == ""
    assert "multimodal" in hover_noisy and "ci_not_converged" in hover_noisy
    x, y = point_xy(page, "pareto-chart", ids["noisy"])
    page.mouse.move(x, y)
    hover = page.locator(".hoverlayer .hovertext").first
    hover.wait_for()
    assert "⚑ multimodal" in (hover.text_content() or "")
    assert "⚑" in page.inner_text("#front-list")  # the noisy one is the faster: on the front
    tab.shot("pareto-flagged")
    page.check("input[name=hide_flagged]")
    page.wait_for_url(re.compile(r"hide_flagged=1"))
    wait_pareto(page)
    shown = chart_ids(page, "pareto-chart", "on the front") | chart_ids(
        page, "pareto-chart", "dominated"
    )
    assert shown == {ids["clean"]}
    assert "1 model(s) with flagged results hidden" in page.inner_text("#pareto-hidden-flagged")
    page = tab.open(f"/models/{ids['noisy']}")
    page.wait_for_selector("#results tr[data-result-id]")
    assert "multimodal" in page.inner_text("#results .quality-flags")
    assert "multimodal" in page.inner_text("#result-flags")
    tab.close()


def test_every_page_with_data(server: Live, context: Any, seeded: Any) -> None:
    tab = Page(context, server)
    page = tab.open("/")
    assert "Getting started" in page.inner_text("main")
    tab.shot("overview")

    page = tab.open("/models")
    page.fill("input[name=q]", "nano")
    assert page.locator("#model-list tbody tr").count() == 2
    page.fill("input[name=q]", "")
    page.select_option("select[name=sort]", "accuracy")
    assert page.inner_text("#model-list tbody tr >> nth=0").split("\t")[1] == "xl"
    tab.shot("models")

    page = tab.open("/devices")
    for name in (server.agent_name, seeded["a"], seeded["b"]):
        assert page.locator(f"tr[data-device='{name}']").count() == 1
    assert page.get_attribute(f"tr[data-device='{server.agent_name}']", "data-status") == "online"
    assert "onnxruntime" in page.inner_text(f"tr[data-device='{server.agent_name}']")
    queue = page.inner_text(f"tr[data-device='{seeded['b']}'] td.num")
    assert queue == "1"
    tab.shot("devices")

    page = tab.open(f"/models/{seeded['ids']['medium']}")
    page.wait_for_selector("#histogram .main-svg")
    tab.shot("model-seeded")

    tab.close()


def pct(x: float) -> str:
    """The page's percentage of an API fraction (0.97 -> "97.0%")."""
    return f"{100 * x:.1f}%"


def test_tables_page_builds_a_real_table(server: Live, context: Any) -> None:
    """A real small table (ofa-proxyless at 128 px, 103 blocks, N whole networks) built from
    the page's form on the module's agent: progress, quality report, scatter, entries, predict
    and exports, each checked against what the API returns."""
    n = 5
    tab = Page(context, server)
    page = tab.open("/tables")
    assert "No tables yet" in page.inner_text("#table-list")
    page.select_option("#table-form select[name=space]", "ofa-proxyless")
    page.select_option("#table-form select[name=resolution]", "128")
    page.select_option("#table-form select[name=device]", server.agent_name)
    page.select_option("#table-form select[name=runtime]", "onnxruntime")
    page.fill("#table-form input[name=threads]", "1")
    page.fill("#table-form input[name=validate_n]", str(n))
    page.select_option("#table-form select[name=measure]", "table-quick")
    page.click("#table-build")
    page.wait_for_selector("#table-detail[data-table-id] #table-progress")
    table_id = int(page.get_attribute("#table-detail", "data-table-id") or 0)
    assert re.search(rf"table={table_id}$", page.url)

    # Live progress from polling: the bar moves, through both phases, up to done.
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 400  # a guard: 108 blocks, slower on a busy host
    while True:
        bar = page.locator("#table-progress .progress-row")
        state = page.get_attribute("#table-progress", "data-status") or ""
        done, total = (
            int(bar.get_attribute("data-done") or -1),
            int(bar.get_attribute("data-total") or -1),
        )
        if not seen or seen[-1] != (state, done, total):
            seen.append((state, done, total))
            if (
                state == "building"
                and 20 <= done < 60
                and not any(s[0] == "building" and s[1] >= 20 for s in seen[:-1])
            ):
                page.evaluate("window.scrollTo(0, 0)")
                tab.shot("tables-building")
        if state in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, f"table still {state}: {seen[-3:]}"
        page.wait_for_timeout(200)
    assert state == "succeeded", page.inner_text("#table-detail")
    assert all(t == 103 + n for _, _, t in seen), seen
    states = [s for s, _, _ in seen]
    assert states[0] == "building" and "validating" in states, states
    dones = [d for _, d, _ in seen]
    assert dones == sorted(dones) and len({d for s, d, _ in seen if s != "succeeded"}) > 2, seen
    assert seen[-1][1] == 103 + n

    with server.http(server.user_token) as c:
        t = c.get(f"/tables/{table_id}").json()
        exp = c.get(f"/tables/{table_id}", params={"format": "json"}).json()
        csv_text = c.get(f"/tables/{table_id}", params={"format": "csv"}).text
        first = next(v for v in exp["validation"] if v["status"] == "succeeded")
        pred = c.post(f"/tables/{table_id}/predict", json={"architectures": [first["arch"]]}).json()
    q = t["quality"]
    assert q["n"] == n and t["device"] == server.agent_name and t["resolution"] == 128

    # The list: status, progress and the ±10% accuracy of the table.
    page.wait_for_selector(f"#table-list tr[data-table-id='{table_id}'][data-status=succeeded]")
    row = page.inner_text(f"#table-list tr[data-table-id='{table_id}']")
    assert pct(q["acc10"]) in row and f"{103 + n} / {103 + n}" in row and "128 px" in row

    # The quality report: both predictors' figures, as the API gives them.
    page.wait_for_selector("#quality-chart .main-svg")
    report = "#quality-report tr[data-predictor='{}'] [data-metric='{}']"
    scored = {"lut_sum": q["lut_sum"], "linear": q.get("calibrated")}
    for predictor, figures in scored.items():
        if figures is None:
            assert page.locator(f"#quality-report tr[data-predictor='{predictor}']").count() == 0
            continue
        assert page.inner_text(report.format(predictor, "n")) == str(n)
        for key in ("acc5", "acc10", "rmspe"):
            assert page.inner_text(report.format(predictor, key)) == pct(figures[key]), key
        assert page.inner_text(report.format(predictor, "spearman")) == f"{figures['spearman']:.3f}"
    assert page.inner_text("[data-stat=acc10] .stat-value") == pct(q["acc10"])
    assert (
        page.get_attribute(f"#quality-report tr[data-predictor='{q['predictor']}']", "class")
        == "selected"
    )

    # The scatter: one marker per validated network per predictor shown, and the ±10% band.
    traces = page.evaluate(
        "document.getElementById('quality-chart').data.map(d => [d.name, d.x, d.y])"
    )
    by_name = {name: (x, y) for name, x, y in traces}
    assert "±10%" in by_name and "LUT sum" in by_name
    x, y = by_name["LUT sum"]
    assert len(x) == len(y) == n
    assert x == pytest.approx([p["measured_ms"] for p in q["points"]])
    assert y == pytest.approx([p["lut_sum_ms"] for p in q["points"]])
    if q["predictor"] == "linear":
        assert by_name["calibrated"][1] == pytest.approx([p["predicted_ms"] for p in q["points"]])
    else:
        assert "calibrated" not in by_name

    # The entries browser lists the API's entries, with their statistic and run count.
    keys = page.eval_on_selector_all(
        "#entries-list tr[data-key]", "rs => rs.map(r => r.dataset.key)"
    )
    assert keys == list(exp["entries"]) and len(keys) == 103
    key, entry = next((k, e) for k, e in exp["entries"].items() if k.startswith("mbconv-"))
    cells = page.locator(f"#entries-list tr[data-key='{key}'] td").all_inner_texts()
    assert cells[1] == "mbconv" and cells[5] == str(entry["count"]) and cells[7] == "measured"
    assert float(cells[4]) == pytest.approx(entry["mean"], abs=1e-4)
    page.fill("input[name=entry-filter]", "k7-s2")
    want = [k for k in exp["entries"] if "k7-s2" in k]
    assert page.locator("#entries-list tr[data-key]").count() == len(want) > 0
    page.fill("input[name=entry-filter]", "")

    # Predict: the prefilled validation network, both numbers as the API computes them.
    page.click("#predict-form button[type=submit]")
    page.wait_for_selector("#predict-result tbody tr")
    shown = page.inner_text("#predict-result [data-value=latency_ms]")
    assert shown == f"{pred['latency_ms'][0]:.3f} ms"
    assert (
        page.inner_text("#predict-result [data-value=lut_sum_ms]")
        == f"{pred['lut_sum_ms'][0]:.3f} ms"
    )

    # Exports: authenticated downloads of the same bytes as the API's.
    formats = page.eval_on_selector_all("a[data-format]", "as => as.map(a => a.dataset.format)")
    assert formats == ["csv", "json", "ofa-yaml"]
    with page.expect_download() as dl:
        page.click("a[data-format=csv]")
    assert Path(dl.value.path()).read_text() == csv_text
    assert dl.value.suggested_filename == f"latency-table-{table_id}-ofa-proxyless-128.csv"

    page.evaluate("window.scrollTo(0, 0)")
    tab.shot("tables")
    box = page.locator("#table-detail").bounding_box()  # at scroll 0: page coordinates
    assert box is not None
    page.screenshot(path=str(SHOTS / "table.png"), full_page=True, clip=box)

    # A failed block: forget one measured entry of this scope, rebuild it with a timeout that
    # cannot be met; the page shows the failed table, the block's status and its error.
    key = next(k for k in exp["entries"] if k.startswith("mbconv-"))
    engine = create_engine(server.database_url)
    with engine.begin() as conn:
        sql = "UPDATE table_entries SET status='pending' WHERE block_key=:k"
        assert conn.execute(text(sql), {"k": key}).rowcount == 1
    engine.dispose()
    broken = {"warmup_runs": 1, "min_runs": 5, "timeout_s": 0.001, "profile": False}
    body = {"space": "ofa-proxyless", "device": server.agent_name, "resolution": 128}
    body |= {"threads": 1, "validate_n": 0, "fresh": True, "settings": broken}
    with server.http(server.user_token) as c:
        failed_id = c.post("/tables", json=body).json()["id"]
    page = tab.open(f"/tables?table={failed_id}")
    page.wait_for_selector("#table-detail[data-status=failed]", timeout=90_000)
    with server.http(server.user_token) as c:
        failed = c.get(f"/tables/{failed_id}").json()
    assert [b["key"] for b in failed["failed_blocks"]] == [key]
    page.wait_for_selector(f"#entries-list tr[data-key='{key}'][data-status=failed]")
    cells = page.locator(f"#entries-list tr[data-key='{key}'] td").all_inner_texts()
    assert cells[7] == "failed" and cells[8] == failed["failed_blocks"][0]["error"]
    assert failed["error"] in page.inner_text("#table-detail")
    assert "102 measured, 1 failed" in page.inner_text("#entries")
    page.select_option("select[name=entry-status]", "failed")
    assert page.locator("#entries-list tr[data-key]").count() == 1
    tab.shot("table-failed")
    tab.close()


# ----------------------------------------------------------------------------- dashboard details
def _measurer(server: Live, name: str, cls: str, runtimes: dict[str, str]) -> tuple[Any, int]:
    """Register a device of any class through the public agent route: (its client, its id)."""
    with server.http(server.admin_token) as c:
        tok = c.post("/tokens", json={"scope": "agent", "name": name}).json()["token"]
    http = server.http(tok)
    r = http.post("/agents/register", json={"name": name, "class": cls, "runtimes": runtimes})
    assert r.status_code == 200, r.text
    return http, int(r.json()["id"])


def _wait_benchmarks(c: httpx.Client, ids: list[int], timeout: float = 240) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        benches = [c.get(f"/benchmarks/{i}").json() for i in ids]
        if all(b["status"] in ("succeeded", "partial", "failed") for b in benches):
            return benches
        assert time.monotonic() < deadline, [b["status"] for b in benches]
        time.sleep(0.5)


def _series_traces(page: Any) -> list[dict[str, Any]]:
    """The overlay chart's traces: series index, role, name, legend flag, model ids, symbols."""
    return list(
        page.evaluate(
            """() => document.getElementById('pareto-chart').data.filter((t) => t.meta)
                .map((t) => ({series: t.meta.series, role: t.meta.role, name: t.name,
                              legend: t.showlegend, ids: (t.customdata || []).map((c) => c[3]),
                              color: t.marker ? t.marker.color : null,
                              symbol: t.marker ? t.marker.symbol : null}))"""
        )
    )


def test_pareto_overlays_two_runtimes_on_one_chart(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    """Three small models measured on the real agent with onnxruntime and with OpenVINO (after a
    real converter worker turned them into IR), overlaid on one chart: two series, each with its
    own color, marker and legend entry, and each front the brute-force front of that runtime's
    p50s. The URL keeps the series; removing it goes back to one series."""
    tag = f"overlay-{uuid.uuid4().hex[:4]}"
    agent = server.agent_name
    log = server.data_dir / "overlay-converter.log"
    conv = _spawn_worker(
        "converter", server.url, server.agent_token, f"{agent}-converter", server.data_dir, log
    )
    accuracy = {"mlp": 51.5, "mbv2": 60.25, "resnet": 63.75}
    runtimes = ("onnxruntime", "openvino")
    try:
        with server.http(server.user_token) as c:
            deadline = time.monotonic() + 60
            while not any(
                d["name"] == f"{agent}-converter" and d["status"] == "online"
                for d in c.get("/devices").json()
            ):
                assert conv.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "the converter worker did not register"
                time.sleep(0.2)
            bench_ids, models = [], {}
            for key, acc in accuracy.items():
                meta = json.dumps({"accuracy": {"top1": acc}, "tags": [tag]})
                files = {"file": (f"{key}.onnx", model_files[key].read_bytes())}
                m = c.post("/models", files=files, data={"name": f"ovl-{key}", "metadata": meta})
                assert m.status_code == 201, m.text
                models[m.json()["id"]] = acc
                targets = [{"runtime": rt, "device": agent} for rt in runtimes]
                body = {"model_id": m.json()["id"], "targets": targets, "settings": FAST}
                b = c.post("/benchmarks", json=body)
                assert b.status_code == 202, b.text
                bench_ids.append(b.json()["id"])
            benches = _wait_benchmarks(c, bench_ids)
    finally:
        _stop(conv)
    points: dict[str, dict[int, tuple[float, float]]] = {rt: {} for rt in runtimes}
    results: dict[str, dict[int, Any]] = {rt: {} for rt in runtimes}
    for b in benches:
        assert b["status"] == "succeeded", (b["status"], [r["error"] for r in b["results"]])
        for r in b["results"]:
            points[r["runtime"]][b["model_id"]] = (r["latency_ms"]["p50"], models[b["model_id"]])
            results[r["runtime"]][b["model_id"]] = {**r, "bench": b["id"]}
    assert all(len(points[rt]) == 3 for rt in runtimes)

    tab = Page(context, server)
    page = tab.open(
        f"/pareto?device={agent}&runtime=onnxruntime&precision=fp32&batch_size=1&tag={tag}"
    )
    wait_pareto(page)
    page.select_option("select[name=add_series]", f"openvino:fp32:1:{agent}")
    page.wait_for_url(re.compile(r"series=openvino%3Afp32%3A1%3A"))
    wait_pareto(page)
    page.wait_for_selector("#pareto-chart[data-series='2'] .main-svg")
    traces = _series_traces(page)
    labels = [f"{agent} · {rt} · fp32 · batch 1" for rt in runtimes]
    legend = [t for t in traces if t["role"] == "legend"]
    assert [t["name"] for t in legend] == labels
    assert not [t for t in traces if t["legend"] and t["role"] != "legend"]
    shown = page.eval_on_selector_all(
        "#pareto-chart .legend .traces .legendtext", "els => els.map((e) => e.textContent)"
    )
    assert [x for x in shown if x in labels] == labels, shown
    assert len({t["color"] for t in legend}) == 2 and len({t["symbol"] for t in legend}) == 2
    for i, rt in enumerate(runtimes):
        mine = [t for t in traces if t["series"] == i]
        front = {m for t in mine if t["role"] == "front" for m in t["ids"]}
        dominated = {m for t in mine if t["role"] == "dominated" for m in t["ids"]}
        assert front == brute_front(points[rt]), rt
        assert dominated == set(points[rt]) - front, rt
        shapes = {s.removesuffix("-open") for t in mine if t["role"] != "line" for s in
                  ([t["symbol"]] if isinstance(t["symbol"], str) else t["symbol"] or [])}  # fmt: skip
        assert shapes == {legend[i]["symbol"]}, (rt, shapes)
    rows = page.locator("#series-list tr[data-model-id]")
    assert rows.count() == 3
    for mid in models:
        cells = page.locator(f"#series-list tr[data-model-id='{mid}'] [data-series]")
        assert cells.count() == 2
        for i, rt in enumerate(runtimes):
            cell = page.locator(f"#series-list tr[data-model-id='{mid}'] [data-series='{i}']")
            on = cell.get_attribute("data-on-front") == "1"
            assert on == (mid in brute_front(points[rt])), (mid, rt)
    tab.shot("pareto-overlay")

    # The URL alone restores both series (shareable).
    other = Page(context, server)
    p2 = other.open(page.url.removeprefix(server.url))
    wait_pareto(p2)
    p2.wait_for_selector("#pareto-chart[data-series='2'] .main-svg")
    assert [t["name"] for t in _series_traces(p2) if t["role"] == "legend"] == labels
    other.close()

    # The overlay chip's remove button: one series again, the plain single-target chart.
    page.click(f"#pareto-series [data-series='openvino:fp32:1:{agent}'] button")
    page.wait_for_function("!location.search.includes('series=')")
    wait_pareto(page)
    page.wait_for_function("document.getElementById('pareto-chart').dataset.series === undefined")
    assert chart_ids(page, "pareto-chart", "on the front") == brute_front(points["onnxruntime"])

    # The OpenVINO profile: compute unit CPU, the oneDNN kernel in its own column, and a note
    # exactly when the layer sum is more than 15% from the p50.
    mid = max(models)  # resnet: the model whose layers do the work
    r = results["openvino"][mid]
    with server.http(server.user_token) as c:
        prof = c.get(f"/benchmarks/{r['bench']}/results/{r['id']}/profile").json()
    layers = prof["layers"]
    assert layers and {la["compute_unit"] for la in layers} == {"CPU"}
    assert all(la["kernel"] for la in layers if la["type"] == "Convolution")
    total, p50 = sum(la["time_ms"] for la in layers), r["latency_ms"]["p50"]
    env = r["environment"]
    # Per-node means over the profiled runs fit inside those runs' wall-clock time.
    assert total <= env["profile_wall_mean_ms"] * 1.02, (total, env["profile_wall_mean_ms"])
    page = tab.open(f"/models/{mid}?result={r['id']}")
    page.wait_for_selector("#profile-units")
    assert page.locator("#profile-units tbody tr").all_inner_texts()[0].split("\t")[0] == "CPU"
    page.click("#profile-layers summary")
    assert page.inner_text("#profile-layers summary").endswith("(all on CPU)")
    heads = page.locator("#profile-layers th").all_inner_texts()
    assert heads == ["layer", "kernel", "time", "share"], heads
    kernels = page.locator("#profile-layers tbody tr td:nth-child(2)").all_inner_texts()
    top = sorted(layers, key=lambda la: -la["time_ms"])[: len(kernels)]
    assert kernels == [la["kernel"] or "\u2013" for la in top]
    assert page.locator("#profile-note").count() == int(abs(total - p50) > 0.15 * p50)
    page.evaluate("window.scrollTo(0, 0)")
    tab.shot("model-openvino-profile")
    tab.close()


def test_pareto_labels_stay_inside_the_chart(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    """Long model names at the chart's corners (fastest and least accurate, slowest and most
    accurate): every label's box lies inside the figure and right of the y axis, on a linear
    and on a log axis, and Plotly draws the labels unclipped by the axes."""
    dev = SimDevice(server, f"sim-labels-{uuid.uuid4().hex[:4]}", "cpu")
    names = {
        "mobilenet_v3_small_with_a_long_name": (0.8, 67.4),
        "efficientnet_b0_also_with_a_long_name": (4.5, 77.1),
        "resnet18_in_the_middle": (2.2, 71.0),
        "mobilenet_v3_large_long_label": (9.5, 80.2),
    }
    f = model_files["mlp"]
    with server.http(server.user_token) as c:
        for name, (p50, top1) in names.items():
            meta = json.dumps({"accuracy": {"top1": top1}})
            r = c.post(
                "/models",
                files={"file": (f.name, f.read_bytes())},
                data={"name": name, "metadata": meta},
            )
            dev.measure(c, r.json()["id"], measured(p50))
    tab = Page(context, server)
    for log in ("", "&log=1"):
        page = tab.open(f"/pareto?device={dev.name}&runtime=onnxruntime{log}")
        wait_pareto(page)
        page.wait_for_selector("#pareto-chart .textpoint text")
        front = page.evaluate(
            "document.getElementById('pareto-chart').data.find((t) => t.name === 'on the front')"
        )
        assert front["cliponaxis"] is False and sorted(t for t in front["text"] if t) == sorted(
            names
        )
        boxes = page.evaluate(
            """() => {
                const gd = document.getElementById('pareto-chart');
                const svg = gd.querySelector('.main-svg').getBoundingClientRect();
                const plot = gd.querySelector('.nsewdrag').getBoundingClientRect();
                const labels = [...gd.querySelectorAll('.textpoint text')].map((t) => {
                    const b = t.getBoundingClientRect();
                    return {text: t.textContent, left: b.left, right: b.right, top: b.top, bottom: b.bottom};
                });
                return {svg: {left: svg.left, right: svg.right, top: svg.top, bottom: svg.bottom},
                        plotLeft: plot.left, labels};
            }"""
        )
        svg = boxes["svg"]
        assert sorted(b["text"] for b in boxes["labels"]) == sorted(names)
        for b in boxes["labels"]:
            assert svg["left"] <= b["left"] and b["right"] <= svg["right"], (log, b, svg)
            assert svg["top"] <= b["top"] and b["bottom"] <= svg["bottom"], (log, b, svg)
            assert b["left"] >= boxes["plotLeft"] - 1, (log, b, "over the y axis")
        tab.shot(f"pareto-labels{'-log' if log else ''}")
    tab.close()


def test_converter_workers_are_not_benchmark_or_table_targets(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    """A converter worker (class converter, convert:<target> capabilities) is in no device
    choice of the table build form or the benchmark form, and the Fleet lists it under its own
    "Converter workers" heading, apart from the devices that measure."""
    name = f"sim-converter-{uuid.uuid4().hex[:4]}"
    _measurer(server, name, "converter", {"convert:openvino": "2026.4.1", "convert:tflite": "2.19"})
    tab = Page(context, server)
    page = tab.open("/tables")
    options = page.eval_on_selector_all(
        "#table-form select[name=device] option", "os => os.map((o) => o.value)"
    )
    assert server.agent_name in options and name not in options, options
    with server.http(server.user_token) as c:
        f = model_files["mlp"]
        mid = c.post("/models", files={"file": (f.name, f.read_bytes())}).json()["id"]
    page = tab.open(f"/models/{mid}")
    page.wait_for_selector("#bench-targets input[data-device]")
    offered = page.eval_on_selector_all(
        "#bench-targets input[data-device]", "bs => bs.map((b) => b.dataset.device)"
    )
    assert server.agent_name in offered and name not in offered, offered
    assert name not in page.inner_text("#bench-targets")
    page = tab.open("/devices")
    assert page.locator(f"#converter-list tr[data-device='{name}']").count() == 1
    assert page.locator(f"#device-list tr[data-device='{name}']").count() == 0
    assert page.locator(f"#device-list tr[data-device='{server.agent_name}']").count() == 1
    card_heads = page.eval_on_selector_all(
        "section.card > h2", "hs => hs.map((x) => x.textContent)"
    )
    assert any(t.startswith("Converter workers") for t in card_heads), card_heads
    row = page.inner_text(f"#converter-list tr[data-device='{name}']")
    assert "openvino 2026.4.1" in row and "convert:" not in row
    tab.shot("devices-converters")
    tab.close()


@contextmanager
def _fresh_coordinator(data_dir: Path) -> Iterator[Live]:
    """A coordinator with nothing in it yet: no model, no device, no job, no table."""
    db = f"sqlite:///{data_dir / 'latencylab.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent", "--port", str(port)]
    env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": db})
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [*cmd, "--data-dir", str(data_dir)], cwd=REPO, env=env, stdout=fh, stderr=fh
        )
    try:
        _wait_for(url, proc, log)
        admin = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            user = c.post("/tokens", json={"scope": "user", "name": "empty"}).json()["token"]
            agent = c.post("/tokens", json={"scope": "agent", "name": "empty"}).json()["token"]
        yield Live(url, data_dir, admin, user, agent, db, "")
    finally:
        _stop(proc)


def _empty_states(page: Any) -> dict[str, tuple[str, str]]:
    """Every visible empty state of the page: name -> (why, what to do)."""
    found = page.eval_on_selector_all(
        "[data-empty]",
        """es => es.filter((e) => e.offsetParent !== null).map((e) => [e.dataset.empty,
              (e.querySelector('.empty-why') || {}).textContent || '',
              (e.querySelector('.empty-todo') || {}).textContent || ''])""",
    )
    return {name: (why, todo) for name, why, todo in found}


def test_empty_states_on_a_fresh_coordinator(
    context: Any, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    """On a coordinator with nothing in it every card that can be empty says why it is empty and
    what to do: overview, models, Pareto, fleet, converters, jobs, tables; then a model's jobs,
    results and conversions; a result without a profile; a Pareto target without accuracy."""
    with _fresh_coordinator(tmp_path) as fresh:
        tab = Page(context, fresh)
        wanted = {
            "/": {"fleet", "benchmarks"},
            "/models": {"models"},
            "/pareto": {"pareto"},
            "/devices": {"devices", "converters", "jobs"},
            "/tables": {"tables", "table-devices"},
        }
        for path, names in wanted.items():
            page = tab.open(path)
            states = _empty_states(page)
            assert names <= set(states), (path, states)
            for name in names:
                why, todo = states[name]
                assert len(why) > 20 and len(todo) > 20, (path, name, why, todo)
            tab.shot(f"empty-{path.strip('/') or 'overview'}")
        assert "No tables yet" in page.inner_text("#table-list")

        with fresh.http(fresh.user_token) as c:
            f = model_files["mlp"]
            mid = c.post("/models", files={"file": (f.name, f.read_bytes())}).json()["id"]
        page = tab.open(f"/models/{mid}")
        states = _empty_states(page)
        assert {"bench-devices", "jobs", "results", "conversions"} <= set(states), states
        tab.shot("empty-model")

        # A result measured without profiling; the model has no accuracy for the Pareto page.
        dev = SimDevice(fresh, f"sim-empty-{uuid.uuid4().hex[:4]}", "cpu")
        with fresh.http(fresh.user_token) as c:
            dev.measure(c, mid, measured(1.5))
        page = tab.open(f"/models/{mid}")
        page.wait_for_selector("#result-detail [data-empty=profile]")
        why, todo = _empty_states(page)["profile"]
        assert "profil" in why and "profil" in todo
        assert "results" not in _empty_states(page) and "jobs" not in _empty_states(page)
        page = tab.open("/pareto")
        page.wait_for_selector("body[data-pareto-ready='1'] [data-empty=pareto-points]")
        why, todo = _empty_states(page)["pareto-points"]
        assert "no accuracy" in todo and dev.name in why
        tab.shot("empty-pareto-points")
        tab.close()


def test_relative_times_stay_true_after_polling_stops(
    server: Live, context: Any, seeded: Any
) -> None:
    """A finished model page stops polling; its "N s ago" still moves on with the clock."""
    tab = Page(context, server)
    tab.page.clock.install()
    page = tab.open(f"/models/{seeded['ids']['medium']}")
    page.wait_for_selector("#jobs time.ago")
    before = page.inner_text("#jobs time.ago >> nth=0")
    page.clock.fast_forward("30:00")
    page.wait_for_function(
        "document.querySelector('#jobs time.ago').textContent !== " + json.dumps(before)
    )
    after = page.locator("#jobs time.ago").all_inner_texts()
    assert all(re.fullmatch(r"(3\d|[4-5]\d) min ago|1 h ago", t) for t in after), after
    assert page.get_attribute("#jobs time.ago >> nth=0", "title")  # the absolute time
    tab.close()


def test_profile_note_when_layers_do_not_add_up(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    """A profile whose layers sum to 21.8 ms against a p50 of 8.2 ms gets a note with both
    numbers and the reason (from the profiled runs' own wall-clock time); one whose layers sum
    within 15% of its p50 gets none. The kernel has its own column; the unit stays CPU."""
    dev = SimDevice(server, f"sim-profile-{uuid.uuid4().hex[:4]}", "cpu")
    f = model_files["mlp"]

    def layers(times: list[float]) -> list[dict[str, Any]]:
        return [
            {"name": f"conv_{i}", "type": "Convolution", "time_ms": t, "compute_unit": "CPU",
             "kernel": "brgconv_avx512_1x1_f32" if i % 2 else "jit_avx512_f32"}
            for i, t in enumerate(times)
        ]  # fmt: skip

    far = layers([6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.3])  # 21.8 ms
    near = layers([0.9, 0.6, 0.4])  # 1.9 ms
    env = {
        "profile_wall_p50_ms": 21.5,
        "profile_warmup_runs": 10,
        "protocol": {"profile_iterations": 50},
    }
    ids = {}
    with server.http(server.user_token) as c:
        for key, p50, prof in (("far", 8.2, far), ("near", 2.0, near)):
            mid = c.post(
                "/models", files={"file": (f.name, f.read_bytes())}, data={"name": f"profile-{key}"}
            ).json()["id"]
            dev.measure(c, mid, measured(p50) | {"profile": prof, "environment": env})
            ids[key] = mid
    tab = Page(context, server)
    page = tab.open(f"/models/{ids['far']}")
    page.wait_for_selector("#profile-note")
    note = page.inner_text("#profile-note")
    assert "21.80 ms" in note and "8.200 ms" in note and "2.66\u00d7" in note, note
    assert "50 runs" in note and "21.50 ms" in note, note
    page.click("#profile-layers summary")
    heads = page.locator("#profile-layers th").all_inner_texts()
    assert heads == ["layer", "kernel", "time", "share"], heads
    first = page.locator("#profile-layers tbody tr >> nth=0 >> td").all_inner_texts()
    assert first[:3] == ["conv_0\nConvolution", "jit_avx512_f32", "6.000 ms"], first
    units = page.locator("#profile-units tbody tr").all_inner_texts()
    assert [u.split("\t")[0] for u in units] == ["CPU"], units
    page.evaluate("window.scrollTo(0, 0)")
    tab.shot("model-profile-note")
    page = tab.open(f"/models/{ids['near']}")
    page.wait_for_selector("#profile-total")
    assert page.locator("#profile-note").count() == 0
    tab.close()


def test_table_entries_show_the_ofa_key(server: Live, context: Any) -> None:
    """An ofa-proxyless table (128 px, measured by a simulated device through the agent routes,
    one block failed on purpose) lists every entry under the key the ofa-yaml export uses, with
    LatencyLab's key beneath it and both searchable; the failed block carries its OFA key too."""
    dev = SimDevice(server, f"sim-lut-{uuid.uuid4().hex[:4]}", "cpu")
    body = {"space": "ofa-proxyless", "device": dev.name, "runtime": "onnxruntime"}
    body |= {"resolution": 128, "threads": 1, "validate_n": 0}
    rng = random.Random(3)
    failure = {"status": "failed", "error": "simulated: out of memory", "times_ms": []}
    first = True
    with server.http(server.user_token) as c:
        r = c.post("/tables", json=body)
        assert r.status_code == 202, r.text
        table_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (t := c.get(f"/tables/{table_id}").json())["status"] == "building":
            assert time.monotonic() < deadline, t["progress"]
            lease = dev.http.post(f"/agents/{dev.id}/lease")
            if lease.status_code == 204:
                time.sleep(0.05)
                continue
            job = lease.json()
            result = failure if first else measured(round(rng.uniform(0.05, 2.0), 4))
            first = False
            rep = dev.http.post(
                f"/agents/{dev.id}/jobs/{job['id']}/report", json={"result": result}
            )
            assert rep.status_code == 201, rep.text
        assert t["status"] == "failed" and len(t["failed_blocks"]) == 1, t
        exp = c.get(f"/tables/{table_id}", params={"format": "json"}).json()
        yaml_text = c.get(f"/tables/{table_id}", params={"format": "ofa-yaml"}).text
        csv_rows = list(
            csv.DictReader(io.StringIO(c.get(f"/tables/{table_id}", params={"format": "csv"}).text))
        )
    yaml_keys = [
        json.loads(line[:-1]) if line.startswith('"') else line[:-1]
        for line in yaml_text.splitlines()
        if line and not line.startswith(("#", " "))
    ]
    ofa = {k: e["ofa_key"] for k, e in exp["entries"].items()}
    assert sorted(ofa.values()) == sorted(yaml_keys) and len(ofa) == 102
    broken = t["failed_blocks"][0]
    by_csv = {row["key"]: row["ofa_key"] for row in csv_rows}
    assert broken["ofa_key"] and broken["ofa_key"] == by_csv[broken["key"]]
    assert all(by_csv[k] == o for k, o in ofa.items())
    pattern = r"expanded_conv-input:\d+x\d+x\d+-output:\d+x\d+x\d+-expand:\d-kernel:\d-stride:\d-idskip:[01]"
    mbconv = [k for k in ofa if k.startswith("mbconv-")]  # measured ones
    assert mbconv and all(re.fullmatch(pattern, ofa[k]) for k in mbconv)

    tab = Page(context, server)
    page = tab.open(f"/tables?table={table_id}")
    page.wait_for_selector("#entries-list tr[data-key]")
    assert page.inner_text("#entries-list th >> nth=0") == "OFA key · LatencyLab key"
    rows = page.eval_on_selector_all(
        "#entries-list tr[data-key]", "rs => rs.map((r) => [r.dataset.key, r.dataset.ofaKey])"
    )
    assert [k for k, _ in rows] == [*exp["entries"], broken["key"]]
    assert all(o == ofa.get(k, broken["ofa_key"]) for k, o in rows)
    failed_row = f"#entries-list tr[data-key='{broken['key']}'][data-status=failed]"
    assert page.get_attribute(failed_row, "data-ofa-key") == broken["ofa_key"]
    assert broken["error"] in page.inner_text(failed_row)
    key = mbconv[5]
    cell = f"#entries-list tr[data-key='{key}'] td >> nth=0"
    assert page.inner_text(f"{cell} >> code.ofa-key") == ofa[key]
    assert page.inner_text(f"{cell} >> code.ll-key") == key
    fragment = "expand:6-kernel:7-stride:2"
    page.fill("input[name=entry-filter]", fragment)
    want = [k for k in exp["entries"] if fragment in ofa[k]]
    assert page.locator("#entries-list tr[data-key]").count() == len(want) > 0
    page.fill("input[name=entry-filter]", "k7-s2")  # our key's spelling still finds them
    assert page.locator("#entries-list tr[data-key]").count() == len(
        [k for k in ofa if "k7-s2" in k]
    )
    page.fill("input[name=entry-filter]", "")
    box = page.locator("#entries").bounding_box()
    assert box is not None
    page.evaluate("document.getElementById('entries').scrollIntoView()")
    page.screenshot(
        path=str(SHOTS / "table-entries-ofa-keys.png"), clip=page.locator("#entries").bounding_box()
    )
    tab.close()


def test_model_page_edits_and_deletes_a_model(
    server: Live, context: Any, model_files: dict[str, Path]
) -> None:
    sim = SimDevice(server, f"sim-edit-{uuid.uuid4().hex[:4]}", "cpu")
    with server.http(server.user_token) as c:
        meta = json.dumps({"accuracy": {"top1": 61.0}, "tags": ["before"]})
        files = {"file": ("mlp.onnx", model_files["mlp"].read_bytes())}
        m = c.post("/models", files=files, data={"name": "typo-name", "metadata": meta}).json()
        sim.measure(c, m["id"], measured(2.0))
        bench = c.get("/benchmarks", params={"model_id": m["id"]}).json()[0]

    tab = Page(context, server)
    page = tab.open(f"/models/{m['id']}")
    assert page.inner_text("h1") == "typo-name"
    page.click("#model-edit-button")
    page.fill("#model-edit input[name=name]", "fixed-name")
    page.fill("#model-edit input[name=accuracy]", "top1=sixty")  # refused before any request
    page.click("#model-edit-save")
    page.wait_for_selector("#model-edit [role=alert]:has-text('metric=number')")
    page.fill("#model-edit input[name=accuracy]", "top1=66.5, top5=88")
    page.fill("#model-edit input[name=tags]", "edited, ui")
    page.click("#model-edit-save")
    page.wait_for_selector("#model-facts dl.facts")
    assert page.inner_text("h1") == "fixed-name"
    assert "top1 66.5, top5 88" in page.inner_text("#model-facts")
    assert page.locator("#model-facts .tag").all_inner_texts() == ["edited", "ui"]
    with server.http(server.user_token) as c:
        saved = c.get(f"/models/{m['id']}").json()
    assert saved["name"] == "fixed-name"
    assert saved["metadata"] == {"accuracy": {"top1": 66.5, "top5": 88}, "tags": ["edited", "ui"]}
    tab.shot("model-edited")

    # Delete, keeping the results: confirm dialog, back to the list, the benchmark survives.
    page.click("#model-delete-button")
    page.wait_for_selector("#delete-dialog[open]")
    assert page.inner_text("#delete-title") == f"Delete model {m['id']} (fixed-name)?"
    assert page.is_checked("#delete-dialog input[value=keep]")
    tab.shot("model-delete-dialog")
    page.click("#delete-cancel")
    page.wait_for_selector("#delete-dialog:not([open])", state="attached")
    page.click("#model-delete-button")
    page.click("#delete-confirm")
    page.wait_for_url(re.compile(r"/models\?deleted=\d+&results=keep$"))
    tab.ready()
    assert "stay readable by id" in page.inner_text(".notice-ok")
    assert page.locator(f"#model-list a[href='/models/{m['id']}']").count() == 0
    with server.http(server.user_token) as c:
        assert c.get(f"/models/{m['id']}").status_code == 410
        assert c.get(f"/benchmarks/{bench['id']}").json()["status"] == "succeeded"
    page = tab.open(f"/models/{m['id']}")
    assert page.inner_text("h1") == "Model deleted"
    tab.close()
