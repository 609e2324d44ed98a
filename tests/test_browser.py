"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless.

One coordinator (SQLite) with one real agent for the module, one browser for the module.
Pareto points on two simulated devices are seeded through the public agent routes with
chosen latencies; the front the page shows is checked against a brute-force computation
here. A small real latency table (ofa-proxyless at 128 px, 5 validation networks, quick
settings) is built from the tables page on the agent (about a minute). Screenshots of every
page land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import AGENT_ENV, REPO, SERVER_ENV, Live, _env, _stop, _wait_for, free_port

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
    page.wait_for_selector("form.signin [role=alert]:has-text('invalid')")
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
    page.select_option("#table-form select[name=measure]", "quick")
    page.click("#table-build")
    page.wait_for_selector("#table-detail[data-table-id] #table-progress")
    table_id = int(page.get_attribute("#table-detail", "data-table-id") or 0)
    assert re.search(rf"table={table_id}$", page.url)

    # Live progress from polling: the bar moves, through both phases, up to done.
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 150
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
