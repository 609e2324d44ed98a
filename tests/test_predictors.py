"""Predictor builds end to end on SQLite and PostgreSQL: a real coordinator, a real agent.

One tiny build per backend (measured fusion rules on 3 candidates, one sample per kernel
family profiled for its layout conversions, 3 layout conversions per direction measured as
models of their own where the profiles show conversions, one refinement round, 2 kernels in
the bias check, a calibration on the 4 smallest calibration networks, 2 small validation networks)
runs through the batch job kind and is shared; the rest reuse its samples. The full build is
``latencylab predictor build --device local --runtime onnxruntime --threads 1`` (minutes).
"""

from __future__ import annotations

import json
import platform
import zipfile
from pathlib import Path
from typing import Any

import onnx
import pytest
from sqlalchemy import create_engine, text

from latencylab.client import LatencyLabError
from latencylab.predictors import PredictorPublic
from tests.conftest import Live, _env, cli, running_coordinator

QUICK = {
    "warmup_runs": 2,
    "min_runs": 10,
    "min_duration_s": 0.02,
    "max_duration_s": 0.3,
    "target_rel_ci": 0.05,
    "profile": False,
    "timeout_s": 60,
}
KERNEL_QUICK = {**QUICK, "profile": True}  # the profile gives each sample its layout time
CALIBRATE_ON = ["mobilenet_v2", "mobilenet_v3", "ghostnet", "regnet"]
OPTIONS: dict[str, Any] = {
    "fusion_candidates": [["conv", "relu"], ["conv", "add"], ["conv", "add", "relu"]],
    "probe_hw": 14,
    "probe_channels": 16,
    "initial_per_type": 1,
    "refine_per_type": 1,
    "refine_rounds": 1,
    "kernels_per_job": 8,
    "bias_check_n": 2,
    "conversions": 3,  # per direction: the fewest a direction's cost is fitted on
    "validate_resolution": 32,
    "validate_random": 0,
    "validate_only": ["mobilenet_v2", "resnet18"],
    "calibrate_only": CALIBRATE_ON,
    "calibrate_resolutions": [96],
    "calibrate_random": 0,
}
BODY = {
    "device": "local",
    "threads": 1,
    "settings": KERNEL_QUICK,
    "network_settings": QUICK,
    "options": OPTIONS,
}


def _sql(live: Live, sql: str, **params: object) -> list[Any]:
    engine = create_engine(live.database_url)
    try:
        with engine.begin() as conn:
            return list(conn.execute(text(sql), params).all())
    finally:
        engine.dispose()


def _batch_jobs(live: Live) -> int:
    return int(_sql(live, "SELECT count(*) FROM jobs WHERE kind = 'predictor_batch'")[0][0])


@pytest.fixture(scope="module")
def built(live: Live) -> PredictorPublic:
    """The shared build of this backend, through POST /predictors, waited for."""
    with live.http(live.user_token) as h:
        r = h.post("/predictors", json=BODY)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "building" and body["reused"] is False
    seen: list[int] = []
    phases: list[str] = []

    def update(p: PredictorPublic) -> None:
        seen.append(p.progress.done)
        phases.append(p.phase)

    with live.client() as c:
        done = c.wait_predictor(body["id"], timeout=600, poll_s=0.5, on_update=update)
    assert done.status == "succeeded", (done.error, done.failed_samples[:3])
    assert len(set(seen)) > 2, "progress did not move while building"
    assert "calibrate" in phases, f"the calibration phase never showed: {sorted(set(phases))}"
    return done


def test_tiny_build_runs_through_batch_jobs(live: Live, built: PredictorPublic) -> None:
    p, g = built, built.progress
    assert p.device == live.agent_name and p.phase == "done" and p.round == 1
    assert g.samples_total > 15 and g.samples_done == g.samples_total and g.samples_failed == 0
    assert g.probes_total >= 6 and g.probes_done == g.probes_total
    rules = p.fusion_rules or {}
    assert rules["source"] == "measured" and len(rules["probes"]) >= 2
    # many kernels per job: the batches are far fewer than the models they measured
    rows = _sql(
        live,
        "SELECT s.job_id, s.measured, s.runs FROM predictor_samples s JOIN predictor_links l "
        "ON l.sample_id = s.id WHERE l.predictor_id = :p",
        p=p.id,
    )
    assert all(m == 1 and runs > 0 for _, m, runs in rows)  # raw times kept per sample
    jobs = {j for j, _, _ in rows}
    kinds = {k for (k,) in _sql(live, "SELECT kind FROM jobs WHERE id IN :ids".replace(
        ":ids", "(" + ",".join(str(j) for j in jobs) + ")"))}  # fmt: skip
    assert kinds == {"predictor_batch"} and len(jobs) < len(rows) / 3
    # the bias check: kernels measured alone as well, batched / single reported
    b = p.bias
    assert b is not None and b.n == 2 and b.median_ratio is not None
    assert all(0.2 < pt.ratio < 5 and pt.single_ms > 0 for pt in b.points)
    # validation on whole networks never trained on, scored per family and overall
    assert [pt.status for pt in p.points] == ["succeeded", "succeeded"]
    assert all(pt.predicted_ms and pt.measured_ms for pt in p.points)
    acc = p.accuracy or {}
    assert acc["overall"]["n"] == 2 and set(acc["families"]) == {"mobilenet", "resnet"}
    assert 0 <= acc["overall"]["acc5"] <= acc["overall"]["acc10"] <= 1


def test_build_calibrates_on_its_own_networks_and_profiles_layouts(
    live: Live, built: PredictorPublic
) -> None:
    """The calibration phase: its networks (never the validation ones) measured end to end,
    the calibration fitted on them and stored in the bundle; the validation scores the
    calibrated bundle and keeps the uncalibrated score; the layout model from the profiles."""
    p, g = built, built.progress
    assert g.calibration_total == 4 and g.calibration_done == 4 and g.calibration_failed == 0
    names = [pt.name for pt in p.calibration_points]
    assert sorted(n.split("-w")[0] for n in names) == sorted(CALIBRATE_ON)
    assert all(pt.role == "calibration" and pt.status == "succeeded" for pt in p.calibration_points)
    assert all(pt.predicted_ms and pt.measured_ms for pt in p.calibration_points)
    assert not set(names) & {pt.name for pt in p.points}  # disjoint from the validation set
    cal = p.calibration
    assert cal is not None and sorted(cal.networks) == sorted(names) and cal.failed == 0
    assert len(cal.coef) == len(cal.terms) == 4 and all(c >= 0 for c in cal.coef)
    assert cal.fit_rmspe <= cal.uncalibrated_rmspe + 1e-9  # least squares beats coef (1, 0..)
    assert cal.leave_one_out_errors is None  # 4 networks: no fit without one of them
    for name, ms in cal.measured_ms.items():
        pt = next(x for x in p.calibration_points if x.name == name)
        assert ms == pytest.approx(pt.measured_ms, rel=1e-9)
    with live.client() as c:
        bundle = json.loads(c.predictor_bundle(p.id))
    assert bundle["calibration"]["coef"] == pytest.approx(cal.coef, rel=1e-12)
    # validation: the calibrated bundle's predictions, and those before calibration
    plain = p.accuracy_uncalibrated or {}
    assert plain["overall"]["n"] == 2
    assert all(pt.predicted_uncalibrated_ms for pt in p.points)
    assert any(pt.predicted_ms != pt.predicted_uncalibrated_ms for pt in p.points)
    # each kernel sample's layout-conversion time, from its profile (the number only)
    rows = _sql(
        live,
        "SELECT s.type, s.layout_ms FROM predictor_samples s JOIN predictor_links l "
        "ON l.sample_id = s.id WHERE l.predictor_id = :p AND s.kind = 'kernel'",
        p=p.id,
    )
    assert rows and all(ms is not None and ms >= 0 for _, ms in rows)
    assert not any(ms for t, ms in rows if t == "runtime_overhead")
    if platform.machine() in ("x86_64", "AMD64"):  # onnxruntime's NCHWc reorders on x86
        assert any(ms > 0 for t, ms in rows if t.split("+")[0] in ("conv", "pwconv"))
        layout = bundle["layout"]
        assert layout is not None and layout["samples"] > 0 and any(layout["blocked"].values())
        # the profiles showed conversions: they were measured as models of their own, in the
        # build's batch jobs, and price the layout model per direction
        convs = _sql(
            live,
            "SELECT s.type, s.status, s.params, j.kind FROM predictor_samples s JOIN "
            "predictor_links l ON l.sample_id = s.id JOIN jobs j ON j.id = s.job_id "
            "WHERE l.predictor_id = :p AND s.kind = 'conversion'",
            p=p.id,
        )
        assert sorted(t for t, *_ in convs) == ["layout_in"] * 3 + ["layout_out"] * 3
        assert {(st, k) for _, st, _, k in convs} == {("succeeded", "predictor_batch")}
        assert g.conversions_total == g.conversions_done == 6 and g.conversions_failed == 0
        costs = layout["conversions"]
        assert set(costs) == {"in", "out"} and all(c["samples"] == 3 for c in costs.values())


def test_predict_via_api_and_sdk_on_an_uploaded_model(
    live: Live, built: PredictorPublic, model_files: dict[str, Any]
) -> None:
    path = model_files["mbv2"]
    with live.client() as c:
        m = c.upload_model(str(path), name="mbv2 for predictors")
        server = c.predict_model(built.id, m.id)
        local = c.predictor(built.id)
        assert c.predictor(built.id) is local  # downloaded once
        here = local.predict(path)
        listed = c.model_predictions(m.id)
        bundle = json.loads(c.predictor_bundle(built.id))
    assert server.latency_ms > 0 and server.device == live.agent_name
    assert server.latency_ms == pytest.approx(sum(k.latency_ms for k in server.kernels))
    assert {"dwconv", "pwconv"} <= {k.type.split("+")[0] for k in server.kernels}
    assert all(k.name and k.type for k in server.kernels)
    # the calibration's layout entry is negative where the kernels' samples paid
    # conversions the network does not (predictor.calibration); every other entry is a time
    assert all(k.latency_ms >= 0 for k in server.kernels if k.type != "layout_conversion")
    assert {"layout_conversion", "weight_traffic", "dispatch"} <= {k.type for k in server.kernels}
    assert here.latency_ms == pytest.approx(server.latency_ms, rel=1e-9)
    assert [k.name for k in here.kernels] == [k.name for k in server.kernels]
    mine = [x for x in listed.predictions if x.predictor_id == built.id]
    assert mine and mine[0].latency_ms == pytest.approx(server.latency_ms, rel=1e-9)
    assert bundle["format"].startswith("latencylab-predictor")


def test_every_measured_user_benchmark_becomes_a_tracked_point(
    live: Live, built: PredictorPublic, model_files: dict[str, Any]
) -> None:
    """A user model benchmarked on the predictor's device and settings shows up in
    /tracked with its measured statistic and its prediction, scored as family 'user'."""
    with live.client() as c:
        m = c.upload_model(str(model_files["mbv2"]), name="mbv2 tracked")
        target = {"runtime": "onnxruntime", "device": live.agent_name, "threads": 1}
        other = {"runtime": "onnxruntime", "device": live.agent_name, "threads": 2}
        done = c.wait(c.benchmark(m.id, [target, other], settings=QUICK).id, timeout=300)
        predicted = c.predict_model(built.id, m.id).latency_ms
    assert [r.status for r in done.results] == ["succeeded", "succeeded"]
    mine = next(r for r in done.results if r.threads == 1)
    stat = built.settings["statistic"]
    with live.http(live.user_token) as h:
        r = h.get(f"/predictors/{built.id}/tracked")
        assert h.get(f"/predictors/{built.id}/tracked", params={"limit": 0}).status_code == 422
    assert r.status_code == 200, r.text
    report = r.json()
    points = [pt for pt in report["points"] if pt["model_id"] == m.id]
    assert len(points) == 1  # the threads=2 result is another setting: not this predictor's
    (pt,) = points
    assert pt["result_id"] == mine.id and report["statistic"] == stat
    assert pt["measured_ms"] == pytest.approx(getattr(mine.latency_ms, stat), rel=1e-9)
    assert pt["predicted_ms"] == pytest.approx(predicted, rel=1e-9)
    acc = report["accuracy"]
    assert set(acc["families"]) == {"user"} and acc["overall"]["n"] == sum(
        p["predicted_ms"] is not None for p in report["points"]
    )
    with live.client() as c:
        c.delete_model(m.id)
    with live.http(live.user_token) as h:
        after = h.get(f"/predictors/{built.id}/tracked").json()
    assert m.id not in {p["model_id"] for p in after["points"]}  # a deleted model drops out


def test_reuse_then_failure_then_resume_measures_nothing_twice(
    live: Live, built: PredictorPublic
) -> None:
    with live.client() as c:
        same = c.create_predictor(**BODY)
        assert same.id == built.id and same.reused and same.status == "succeeded"
        batches = _batch_jobs(live)
        # a second build of the same scope: every sample reused; its networks cannot finish,
        # so it fails in the calibration phase, before any validation network
        broken = {**QUICK, "timeout_s": 0.001}
        p = c.create_predictor(**{**BODY, "network_settings": broken, "fresh": True})
        assert p.id != built.id and p.status == "building"
        failed = c.wait_predictor(p.id, timeout=300)
        assert failed.progress.samples_total == built.progress.samples_total
        assert failed.progress.conversions_total == built.progress.conversions_total
        assert failed.progress.samples_reused >= built.progress.samples_total
        assert failed.status == "failed" and failed.phase == "calibrate"
        assert "0 of 4 calibration networks measured" in (failed.error or "")
        assert failed.progress.calibration_failed == 4 and failed.progress.samples_failed == 0
        assert failed.progress.networks_total == 0 and failed.calibration is None
        with pytest.raises(LatencyLabError) as bad:  # kernel settings other than the timeout
            c.resume_predictor(p.id, settings={**KERNEL_QUICK, "min_runs": 11})
        assert bad.value.status_code == 422 and "timeout_s only" in bad.value.detail
        c.resume_predictor(p.id, network_settings=QUICK)  # the calibration phase resumes
        done = c.wait_predictor(p.id, timeout=300)
    assert done.status == "succeeded", done.error
    assert [pt.status for pt in done.calibration_points] == ["succeeded"] * 4
    assert done.calibration is not None and done.calibration.networks
    assert [pt.status for pt in done.points] == ["succeeded", "succeeded"]
    assert _batch_jobs(live) == batches, "a reused or resumed build measured kernels again"
    twice = _sql(live, "SELECT count(*) FROM predictor_samples WHERE measured > 1")[0][0]
    assert twice == 0


def test_cli_show_build_and_local_predict(
    live: Live, built: PredictorPublic, model_files: dict[str, Any]
) -> None:
    env = _env({"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token})
    shown = cli("predictor", "show", str(built.id), env=env, timeout=60)
    assert shown.returncode == 0 and "overall" in shown.stdout, shown.stderr
    assert "calibration on 4 networks" in shown.stdout
    opts = [f"--option={k}={json.dumps(v)}" for k, v in OPTIONS.items()]
    quick = json.dumps(QUICK)
    again = cli("predictor", "build", "--device", "local", "--threads", "1", "--json", *opts,
                "--settings", json.dumps(KERNEL_QUICK), "--network-settings", quick, env=env,
                timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr
    got = json.loads(again.stdout)  # the identical build (this one, or a newer twin)
    assert got["reused"] and got["status"] == "succeeded" and got["id"] >= built.id
    pred = cli("predictor", "predict", str(built.id), str(model_files["mbv2"]), "--json", env=env)
    assert pred.returncode == 0, pred.stderr
    assert json.loads(pred.stdout)["latency_ms"] > 0
    none = cli("predictor", "predict", str(built.id), env=env, timeout=60)
    assert none.returncode == 2 and "--model-id" in none.stderr


TOO_FEW_TO_CALIBRATE = {  # 2 resnets at one size (given twice), no NAS network: 2 < 4
    "calibrate_only": ["resnet"],
    "calibrate_resolutions": [224, 224],
    "calibrate_random": 0,
}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"options": {"initial_per_tipe": 1}}, "initial_per_tipe"),
        ({"runtime": "tflite"}, "ONNX"),
        ({"device": "no-such-device"}, "no registered device"),
        ({"threads": -1}, "threads"),
        ({"options": {"validate_only": ["no_such_net"]}}, "no_such_net"),
        ({"options": {"kinds": ["nope"]}}, "nope"),
        ({"options": {"calibrate_only": ["no_such_cal"]}}, "no_such_cal"),
        ({"options": TOO_FEW_TO_CALIBRATE}, "at least 4"),
        ({"options": {"calibrate_resolutions": [8]}}, "calibrate_resolutions"),
        ({"options": {"calibration": False}}, "calibration"),
        ({"options": {"conversions": -1}}, "conversions"),
        ({"options": {"conversions": "all"}}, "conversions"),
        ({"settings": {"min_runs": 5, "max_runs": 2}}, "min_runs"),
    ],
)
def test_bad_bodies_are_refused_clearly(live: Live, body: dict[str, Any], needle: str) -> None:
    with live.http(live.user_token) as h:
        r = h.post("/predictors", json=body)
    assert r.status_code == 422 and needle in r.text, r.text


def test_unknown_predictor_and_model_are_404(live: Live, built: PredictorPublic) -> None:
    with live.http(live.user_token) as h:
        assert h.get("/predictors/999999").status_code == 404
        assert h.post("/predictors/999999/resume").status_code == 404
        assert h.get("/predictors/999999/bundle").status_code == 404
        r = h.post(f"/predictors/{built.id}/predict", json={"model_id": 999999})
        assert r.status_code == 404 and "model 999999" in r.json()["detail"]
        assert h.post(f"/predictors/{built.id}/predict", json={"model": 1}).status_code == 422
        assert h.get("/models/999999/predictions").status_code == 404


def test_cli_list_on_a_fresh_coordinator_says_how_to_build_one(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path / 'latencylab.db'}"
    with running_coordinator(url, tmp_path / "data", converter=False) as fresh:
        env = _env({"LATENCYLAB_SERVER": fresh.url, "LATENCYLAB_TOKEN": fresh.user_token})
        out = cli("predictor", "list", env=env, timeout=60)
    assert out.returncode == 0, out
    assert "no predictors yet" in out.stderr and "latencylab predictor build" in out.stderr


def test_predictions_are_kept_and_an_archived_onnx_predicts_from_its_graph(
    live: Live, built: PredictorPublic, model_files: dict[str, Any], tmp_path: Path
) -> None:
    """A prediction is stored once (bundle, ONNX, shapes) and read back; the same model
    uploaded as a zip with external data predicts the same kernels from its graph."""
    path = model_files["mbv2"]
    (tmp_path / "m").mkdir()
    onnx.save(
        onnx.load(str(path)), str(tmp_path / "m" / "mbv2.onnx"), save_as_external_data=True,
        all_tensors_to_one_file=True, location="mbv2.data", size_threshold=0,
    )  # fmt: skip
    archive = tmp_path / "mbv2-external.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("mbv2.onnx", "mbv2.data"):
            zf.write(tmp_path / "m" / name, f"m/{name}")

    def stored(sha: str) -> int:
        q = (
            "SELECT count(*) FROM stored_predictions s JOIN predictors p "
            "ON p.bundle_sha256 = s.bundle_sha256 WHERE p.id = :p AND s.onnx_sha256 = :o"
        )
        return int(_sql(live, q, p=built.id, o=sha)[0][0])

    with live.client() as c:
        single = c.upload_model(str(path), name="mbv2 single file")
        archived = c.upload_model(str(archive), name="mbv2 archived")
        first = c.predict_model(built.id, single.id)
        kept = stored(single.sha256)
        again = c.predict_model(built.id, single.id)
        from_zip = c.predict_model(built.id, archived.id)
    assert kept == 1 and stored(single.sha256) == 1  # computed once, then read back
    assert again.model_dump() == first.model_dump()
    assert stored(archived.sha256) == 1
    assert from_zip.latency_ms == pytest.approx(first.latency_ms, rel=1e-9)
    assert [k.name for k in from_zip.kernels] == [k.name for k in first.kernels]
