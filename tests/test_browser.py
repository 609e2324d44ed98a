"""The dashboard in a real browser: Playwright driving Debian's Chromium, headless.

One coordinator (SQLite) with one real agent for the module, one browser for the module.
Pareto points on two simulated devices are seeded through the public agent routes with
chosen latencies; the front the page shows is checked against a brute-force computation
here. Screenshots of every page land in ``test-artifacts/screenshots/``.
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

    page = tab.open("/tables")
    text = page.inner_text("main")
    assert "No tables yet" in text or "Tables (" in text
    tab.shot("tables")
    tab.close()


def test_tables_page_against_the_tables_contract(server: Live, context: Any) -> None:
    """The tables API is built elsewhere: serve its contract from the test to draw the page."""
    rng = [(i, 2.0 + 0.37 * i, (2.0 + 0.37 * i) * (1 + ((i * 7) % 11 - 5) / 60)) for i in range(24)]
    table = {
        "id": 1,
        "space": "ofa-mbv3",
        "device": server.agent_name,
        "runtime": "onnxruntime",
        "precision": "fp32",
        "resolution": 224,
        "batch_size": 1,
        "status": "succeeded",
        "progress": {"done": 412, "total": 412},
        "quality": {"n": 24, "acc5": 0.71, "acc10": 0.96, "rmspe": 0.052, "spearman": 0.981},
        "validation": [
            {"name": f"net-{i}", "measured_ms": m, "predicted_ms": p} for i, m, p in rng
        ],
    }
    entries = {
        f"expanded_conv-input:56x56x24-output:56x56x24-expand:{e}-kernel:{k}-stride:1-idskip:1": {
            "mean": 0.1 * e + 0.02 * k,
            "count": 50,
            "var": 0.0001,
        }
        for e in (3, 4, 6)
        for k in (3, 5, 7)
    }

    def handle(route: Any) -> None:
        url = route.request.url
        if "format=json" in url:
            body: Any = entries
        elif re.search(r"/tables/1(\?|$)", url):
            body = table
        elif url.endswith("/tables"):
            body = [table]
        else:
            body = [{"name": "ofa-mbv3"}, {"name": "ofa-proxyless"}]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    tab = Page(context, server)
    tab.page.route(re.compile(r".*/api/v1/(tables|spaces).*"), handle)
    page = tab.open("/tables")
    page.wait_for_selector("#quality-chart .main-svg")
    assert "within ±10%" in page.inner_text("#table-detail")
    names = page.evaluate("document.getElementById('quality-chart').data.map(d => d.name)")
    assert "±10%" in names and "networks" in names
    assert page.locator("#table-detail tbody tr").count() == len(entries)
    tab.shot("tables-contract")
    tab.close()
