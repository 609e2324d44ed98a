"""Latency predictors in the dashboard: Playwright driving Debian's Chromium, headless.

One coordinator (SQLite) with one real agent. Two models with an accuracy are uploaded; the
model page says no predictor exists; a TINY predictor (default fusion rules, one sample per
kernel family in one batch job, one kernel in the bias check, one small validation network,
no calibration)
is built through the API while the predictor page and the model page watch it live. Then the
model page shows the predicted latency before any benchmark, and after one benchmark the
predicted and the measured latency side by side; the predictor page shows the accuracy report,
the scatter and the bias check, and its build form refuses a bad request and returns the
identical build; the Pareto page draws the unmeasured model as a hollow
"predicted" point and the measured one as a measured point. The full build and its accuracy
are ``bench/predictor.py``'s; the build protocol is ``tests/test_predictors.py``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Live, running_coordinator
from tests.test_browser import ARGS, CHROMIUM, SHOTS, Page

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
)

QUICK = {
    "warmup_runs": 2,
    "min_runs": 10,
    "min_duration_s": 0.02,
    "max_duration_s": 0.3,
    "target_rel_ci": 0.05,
    "profile": False,
    "timeout_s": 60,
}
TINY = {
    "discover_fusion": False,
    "initial_per_type": 1,
    "refine_rounds": 0,
    "kernels_per_job": 40,
    "bias_check_n": 1,
    "validate_resolution": 32,
    "validate_random": 0,
    "validate_only": ["mobilenet_v2"],
    "calibrate": False,  # the calibration phase is tests/test_predictors.py's
}
BUILD_TIMEOUT_MS = 150_000


def fmt_ms(v: float) -> str:
    """The dashboard's fmtMs."""
    return f"{v:.{1 if v >= 100 else 2 if v >= 10 else 3}f} ms"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("browser-predictor")
    db = f"sqlite:///{data_dir / 'latencylab.db'}"
    with running_coordinator(db, data_dir, converter=False) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, set up as tests/test_browser.py's."""
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


@pytest.fixture(scope="module")
def models(server: Live, model_files: dict[str, Path]) -> dict[str, int]:
    """Two models with a top-1 accuracy: one to benchmark, one that stays unmeasured."""
    with server.client() as c:
        a = c.upload_model(model_files["mbv2"], "mbv2-pred", {"accuracy": {"top1": 71.0}})
        b = c.upload_model(model_files["resnet"], "resnet-pred", {"accuracy": {"top1": 74.0}})
    return {"measured": a.id, "predicted": b.id}


def plot_traces(page: Any, sel: str) -> list[dict[str, Any]]:
    return page.evaluate(
        f"""() => (document.querySelector({sel!r}).data || []).map((t) => ({{
            name: t.name, x: t.x, customdata: t.customdata,
            symbol: t.marker ? t.marker.symbol : null, meta: t.meta || null }}))"""
    )


@pytest.fixture(scope="module")
def built(server: Live, models: dict[str, int], browser: Any) -> dict[str, Any]:
    """Before: the model page's empty state. Then the build, watched live on the predictor
    page and on the model page (which shows the prediction once it succeeds)."""
    model_tab = Page(browser, server)
    page = model_tab.open(f"/models/{models['measured']}")
    empty = page.locator("#predicted [data-empty='predictions']")
    assert "latencylab predictor build --device" in empty.inner_text()
    with server.http(server.user_token) as h:
        body = {"device": "local", "threads": 1, "settings": QUICK, "network_settings": QUICK}
        r = h.post("/predictors", json={**body, "options": TINY})
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    page = model_tab.open(f"/models/{models['measured']}")
    assert "still being built" in empty.inner_text()
    live_tab = Page(browser, server)
    pp = live_tab.open(f"/predictors/{pid}")
    phases: set[str] = set()
    deadline = time.monotonic() + BUILD_TIMEOUT_MS / 1000
    prog = pp.locator("#predictor-progress")
    while (status := prog.get_attribute("data-status")) == "building":
        phases.add(str(prog.get_attribute("data-phase")))
        assert time.monotonic() < deadline, f"predictor {pid} still building; phases {phases}"
        pp.wait_for_timeout(400)
    assert status == "succeeded", pp.locator("#predictor-status").inner_text()
    assert len(phases | {"done"}) >= 3, f"the page did not follow the phases live: {phases}"
    live_tab.shot("predictor-built")
    live_tab.close()
    # the model page, open all along, picks the prediction up by itself
    page.wait_for_selector("#predicted .prediction-row", timeout=15_000)
    with server.http(server.user_token) as h:
        p = h.get(f"/predictors/{pid}").json()
        preds = h.get(f"/models/{models['measured']}/predictions").json()
    return {"id": pid, "predictor": p, "predictions": preds, "model_tab": model_tab}


def test_model_page_shows_prediction_before_and_beside_a_benchmark(
    server: Live, models: dict[str, int], built: dict[str, Any]
) -> None:
    tab: Page = built["model_tab"]
    page = tab.page
    pred = next(x for x in built["predictions"]["predictions"] if x["predictor_id"] == built["id"])
    row = page.locator(f"#predicted .prediction-row[data-predictor-id='{built['id']}']")
    assert row.get_attribute("data-measured") == "0"  # before any benchmark
    assert row.locator(".predicted-ms").inner_text() == fmt_ms(pred["latency_ms"])
    assert "not measured yet" in row.inner_text()
    acc = built["predictor"]["accuracy"]["overall"]
    assert (
        row.locator(".predictor-accuracy").inner_text() == f"±10%: {100 * acc['acc10']:.1f}% of 1"
    )
    # the per-kernel breakdown: the top kernels, the rest one click further
    box = page.locator(f".kernel-breakdown[data-predictor-id='{built['id']}']")
    box.locator("summary").first.click()
    top = box.locator(":scope > .table-wrap .kernel-row")
    assert top.count() == min(8, len(pred["kernels"]))
    types = {k["type"] for k in pred["kernels"]}
    assert {top.nth(i).get_attribute("data-kernel-type") for i in range(top.count())} <= types
    if len(pred["kernels"]) > 8:
        box.locator(".all-kernels summary").click()
        assert box.locator(".all-kernels .kernel-row").count() == len(pred["kernels"])
    tab.shot("model-predicted")
    # a benchmark on the predictor's device, runtime and threads: measured beside predicted
    with server.client() as c:
        target = {"runtime": "onnxruntime", "device": server.agent_name, "threads": 1}
        bench = c.benchmark(models["measured"], [target], settings=QUICK)
    tab.open(f"/models/{models['measured']}")  # the page polls while the job runs
    page.wait_for_selector("#predicted .prediction-row[data-measured='1']", timeout=60_000)
    with server.client() as c:
        res = c.wait(bench.id, timeout=60).results[0]
    assert res.status == "succeeded" and res.latency_ms is not None
    stat = built["predictor"]["settings"]["statistic"]
    measured = getattr(res.latency_ms, stat)
    assert row.locator(".measured-ms").inner_text() == fmt_ms(measured)
    err = float(str(row.locator("[data-error]").get_attribute("data-error")))
    assert err == pytest.approx((pred["latency_ms"] - measured) / measured, rel=1e-6)
    page.wait_for_selector("#results tr[data-result-id]")
    tab.shot("model-predicted-measured")
    # the predictor page tracks it among the users' own models, predicted beside measured
    page = tab.open(f"/predictors/{built['id']}")
    tracked = page.locator(f"#predictor-tracked tr[data-model-id='{models['measured']}']")
    tracked.wait_for(timeout=30_000)
    cells = tracked.locator("td")
    assert cells.nth(1).inner_text() == fmt_ms(measured)
    assert cells.nth(2).inner_text() == fmt_ms(pred["latency_ms"])
    tab.close()


def test_predictor_pages_show_progress_accuracy_scatter_and_bias(
    server: Live, built: dict[str, Any], browser: Any
) -> None:
    p = built["predictor"]
    tab = Page(browser, server)
    page = tab.open("/predictors")
    row = page.locator(f"#predictor-list tr[data-predictor-id='{built['id']}']")
    assert row.get_attribute("data-status") == "succeeded"
    acc = p["accuracy"]["overall"]
    assert row.locator("[data-metric='acc10']").inner_text() == f"{100 * acc['acc10']:.1f}%"
    tab.shot("predictors")
    # the build form: a refused request says why; the identical request shows the existing build
    form = page.locator("#predictor-form")
    form.locator("select[name=device]").select_option(server.agent_name)
    form.locator("textarea[name=extra]").fill(json.dumps({"options": {"initial_per_tipe": 1}}))
    form.locator("#predictor-build").click()
    assert "initial_per_tipe" in page.locator("#predictor-form-status [role=alert]").inner_text()
    same = {"settings": QUICK, "network_settings": QUICK, "options": TINY}
    form.locator("textarea[name=extra]").fill(json.dumps(same))
    form.locator("#predictor-build").click()
    page.wait_for_url(f"**/predictors/{built['id']}?reused=1")
    tab.ready()
    assert page.locator("#predictor-reused").count() == 1
    page = tab.open("/predictors")
    page.locator(f"#predictor-list tr[data-predictor-id='{built['id']}']").click()
    page.wait_for_url(f"**/predictors/{built['id']}")
    tab.ready()
    assert page.locator("#predictor-phases li.current, #predictor-phases li.failed").count() == 0
    assert page.locator("#predictor-phases li.skipped[data-phase='calibrate']").count() == 1
    assert "options.calibrate false" in page.locator("#predictor-calibration").inner_text()
    done = page.locator("#predictor-counts [data-stat='samples']")
    g = p["progress"]
    assert done.get_attribute("data-done") == str(g["samples_total"]) != "0"
    report = page.locator("#predictor-accuracy[data-state='ready']")
    assert report.locator("tr[data-family='mobilenet']").count() == 1
    overall = report.locator("tr[data-family='overall'] [data-metric='acc10']")
    assert overall.inner_text() == f"{100 * acc['acc10']:.1f}%"
    page.wait_for_function("() => (document.querySelector('#predictor-scatter').data || []).length")
    traces = {t["name"]: t for t in plot_traces(page, "#predictor-scatter")}
    assert {"±10%", "predicted = measured", "mobilenet"} <= set(traces)
    net = p["points"][0]
    assert traces["mobilenet"]["x"] == [pytest.approx(net["measured_ms"])]
    bias = page.locator("#predictor-bias[data-state='ready']")
    assert float(str(bias.get_attribute("data-median"))) == pytest.approx(p["bias"]["median_ratio"])
    assert page.locator("[data-empty='failed-samples']").count() == 1
    tab.shot("predictor-report")
    tab.close()


def test_pareto_draws_the_unmeasured_model_as_a_predicted_point(
    server: Live, models: dict[str, int], built: dict[str, Any], browser: Any
) -> None:
    with server.http(server.user_token) as h:
        q = {"device": server.agent_name, "runtime": "onnxruntime", "metric": "top1"}
        plain = h.get("/pareto", params=q).json()
        both = h.get("/pareto", params={**q, "include_predicted": "true"}).json()
        guess = h.get(f"/models/{models['predicted']}/predictions").json()["predictions"][0]
        opts = h.get("/pareto/options", params={"include_predicted": "true"}).json()
    assert [pt["model_id"] for pt in plain["points"]] == [models["measured"]]
    kinds = {pt["model_id"]: pt["predicted"] for pt in both["points"]}
    assert kinds == {models["measured"]: False, models["predicted"]: True}
    ghost = next(pt for pt in both["points"] if pt["predicted"])
    assert ghost["latency_ms"] == pytest.approx(guess["latency_ms"], rel=1e-9)
    assert both["predictor_id"] == built["id"] and not both["predicted_failed"]
    target = {"device": server.agent_name, "runtime": "onnxruntime", "precision": "fp32"}
    assert {**target, "batch_size": 1, "predictor_id": built["id"]} in opts["predictors"]
    tab = Page(browser, server)
    page = tab.open(f"/pareto?device={server.agent_name}&runtime=onnxruntime&metric=top1")
    page.wait_for_selector("body[data-pareto-ready='1']")
    note = page.locator(".predicted-note")
    assert note.get_attribute("data-predicted") == "1"
    page.wait_for_function("() => (document.querySelector('#pareto-chart').data || []).length")
    traces = plot_traces(page, "#pareto-chart")
    hollow = [t for t in traces if (t["meta"] or {}).get("role") == "predicted"]
    assert len(hollow) == 1 and hollow[0]["name"].startswith("predicted")
    assert [d[3] for d in hollow[0]["customdata"]] == [models["predicted"]]
    assert all(s.endswith("-open-dot") for s in hollow[0]["symbol"])  # not a flagged ring
    solid = [d[3] for t in traces if t not in hollow for d in (t["customdata"] or [])]
    assert solid == [models["measured"]]
    page.locator("details.all-points summary").click()
    assert page.locator(f"tr[data-model-id='{models['predicted']}'][data-predicted='1']").count()
    assert page.locator(f"tr[data-model-id='{models['measured']}'][data-predicted='0']").count()
    tab.shot("pareto-predicted")
    tab.close()
