"""Quality flags from synthetic raw times (``latencylab.quality.assess``), the mode finder,
the between-run summary, the presets, and the host-load sample on this machine."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time

import pytest

from agents.measure.environment import host_load
from agents.measure.stats import summarize
from latencylab.modes import modes
from latencylab.presets import mode_of, preset, presets
from latencylab.quality import (
    BUSY_OTHER_CPU_SHARE,
    HIGH_COV,
    RepeatRun,
    assess,
    between_runs,
    flagged,
    t975,
)
from latencylab.schemas import MeasureSettings

QUIET = {"loadavg": [0.1, 0.1, 0.1], "logical_cores": 8, "host_load": {"other_share": 0.0}}


def codes(times: list[float], **kw: object) -> dict[str, str]:
    """code -> severity of the flags of a result with these raw times."""
    args: dict[str, object] = {
        "latency": summarize(times).model_dump(),
        "runs": len(times),
        "stop_reason": "ci_converged",
        "min_runs": 50,
        "target_rel_ci": 0.01,
        "environment": QUIET,
    }
    args.update(kw)
    return {f.code: f.severity for f in assess(times, **args)}  # type: ignore[arg-type]


def gauss(n: int, mu: float, sd: float, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sd) for _ in range(n)]


def test_clean_times_raise_no_warning_only_the_within_process_note() -> None:
    times = gauss(2000, 10.0, 0.2)
    assert codes(times) == {"within_process_ci": "info"}
    flags = assess(
        times,
        latency=summarize(times).model_dump(),
        runs=2000,
        stop_reason="ci_converged",
        min_runs=50,
        target_rel_ci=0.01,
        environment=QUIET,
    )
    assert not flagged(flags)
    note = flags[0]
    assert "one process" in note.message and note.value is not None and note.value < 0.01


def test_a_right_skewed_unimodal_tail_is_not_multimodal() -> None:
    rng = random.Random(3)
    times = [10.0 + rng.expovariate(4.0) for _ in range(3000)]  # latency-like tail
    times += [40.0 + rng.random() for _ in range(20)]  # rare far outliers
    assert "multimodal" not in codes(times)
    assert len(modes(times)) == 1


def test_bimodal_times_are_flagged_with_both_modes_named() -> None:
    # The efficientnet_b0 case: modes at ~8 and ~16 ms, CoV ~44%.
    rng = random.Random(1)
    times = [
        rng.gauss(8.0, 0.3) if rng.random() < 0.55 else rng.gauss(16.0, 0.6) for _ in range(600)
    ]
    found = modes(times)
    assert [round(m.at_ms) for m in found] == [8, 16]
    assert abs(found[0].share - 0.55) < 0.06 and abs(sum(m.share for m in found) - 1) < 1e-9
    flags = {f.code: f for f in assess(
        times, latency=summarize(times).model_dump(), runs=600, stop_reason="max_duration",
        min_runs=50, target_rel_ci=0.01, environment=QUIET,
    )}  # fmt: skip
    assert flags["multimodal"].severity == "warning"
    assert "2 modes" in flags["multimodal"].message and "ms (5" in flags["multimodal"].message
    assert flags["high_cov"].value is not None and flags["high_cov"].value > HIGH_COV
    assert "CoV" in flags["high_cov"].message
    # stopped by max_duration while the CI was wider than the 1% target
    assert flags["ci_not_converged"].value is not None and flags["ci_not_converged"].value > 0.01
    assert "max_duration" in flags["ci_not_converged"].message


def test_high_cov_without_modes() -> None:
    rng = random.Random(5)
    times = [10.0 * rng.lognormvariate(0.0, 0.2) for _ in range(2000)]
    got = codes(times)
    assert got["high_cov"] == "warning" and "multimodal" not in got


def test_too_few_runs_and_no_ci_before_the_cap() -> None:
    times = gauss(4, 10.0, 0.2)
    got = codes(times, stop_reason="max_duration")
    assert got["too_few_runs"] == "warning" and got["ci_not_converged"] == "warning"
    flags = assess(
        times, latency=summarize(times).model_dump(), runs=4, stop_reason="max_duration",
        min_runs=50, target_rel_ci=0.01, environment=QUIET,
    )  # fmt: skip
    short = next(f for f in flags if f.code == "too_few_runs")
    assert short.value == 4 and short.threshold == 50 and "min_runs=50" in short.message
    assert "too few runs for any CI" in next(
        f.message for f in flags if f.code == "ci_not_converged"
    )
    # converged by its own rule: no CI flag even with a wide interval
    assert "ci_not_converged" not in codes(gauss(100, 10.0, 0.2), stop_reason="ci_converged")


def test_busy_host_from_load_average_or_other_processes() -> None:
    times = gauss(500, 10.0, 0.2)
    loaded = {"loadavg": [3.74, 2.0, 1.0], "logical_cores": 2}
    flags = assess(
        times, latency=summarize(times).model_dump(), runs=500, stop_reason="ci_converged",
        min_runs=50, target_rel_ci=0.01, environment=loaded,
    )  # fmt: skip
    busy = next(f for f in flags if f.code == "busy_host")
    assert busy.severity == "warning" and "load average 3.74 on 2 CPUs" in busy.message
    sampled = {"logical_cores": 2, "host_load": {"logical_cores": 2, "loadavg_1m": 1.0,
               "other_cpus": 0.9, "other_share": 0.45, "window_s": 0.2}}  # fmt: skip
    got = assess(
        times, latency=summarize(times).model_dump(), runs=500, stop_reason="ci_converged",
        min_runs=50, target_rel_ci=0.01, environment=sampled,
    )  # fmt: skip
    busy = next(f for f in got if f.code == "busy_host")
    assert "0.90 of 2 CPUs (45.0%)" in busy.message and busy.value == 0.45
    assert busy.threshold == BUSY_OTHER_CPU_SHARE
    assert "busy_host" not in codes(times)  # the quiet host


def _repeat(i: int, times: list[float], host: dict[str, float] | None = None) -> RepeatRun:
    s = summarize(times)
    return RepeatRun(index=i, runs=len(times), p50_ms=s.p50, mean_ms=s.mean, cov=s.cov,
                     stop_reason="ci_converged", ci_rel_halfwidth=0.003,
                     host_load=host or {})  # fmt: skip


def test_between_runs_interval_spread_and_disagreeing_repeats() -> None:
    parts = [gauss(300, mu, 0.1, seed=i) for i, mu in enumerate((10.0, 10.1, 10.05))]
    summary = between_runs([_repeat(i, p) for i, p in enumerate(parts)])
    medians = [statistics.median(p) for p in parts]
    mean = statistics.fmean(medians)
    half = 4.303 * statistics.stdev(medians) / 3**0.5
    assert summary.count == 3 and summary.p50_median_ms == pytest.approx(statistics.median(medians))
    assert summary.p50_ci95_low == pytest.approx(mean - half)
    assert summary.p50_ci95_high == pytest.approx(mean + half)
    assert summary.p50_spread == pytest.approx(max(medians) / min(medians) - 1)
    assert summary.p50_cov == pytest.approx(statistics.stdev(medians) / mean)
    pooled = [t for p in parts for t in p]
    got = codes(pooled, repeats=summary, runs=len(pooled))
    assert "within_process_ci" not in got and "runs_disagree" not in got  # 1% apart: fine
    far = [gauss(300, 10.0, 0.1, 1), gauss(300, 11.0, 0.1, 2)]
    summary = between_runs([_repeat(i, p) for i, p in enumerate(far)])
    pooled = [t for p in far for t in p]
    got = codes(pooled, repeats=summary, runs=len(pooled))
    assert got["runs_disagree"] == "warning"
    assert "multimodal" not in got  # each repeat alone is unimodal; the spread says the rest
    busy = between_runs([_repeat(0, far[0]), _repeat(1, far[1], {"other_share": 0.6})])
    assert "busy_host" in codes(pooled, repeats=busy, runs=len(pooled))


def test_t_quantiles_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats", reason="SciPy checks the t table")
    for df in (*range(1, 40), 50, 100, 1000):
        assert t975(df) == pytest.approx(float(stats.t.ppf(0.975, df)), abs=1e-3)


def test_presets_are_defined_once_and_name_the_mode() -> None:
    names = [p.name for p in presets()]
    assert names[:3] == ["quick", "standard", "publish"]
    assert preset("standard") == MeasureSettings()
    assert mode_of(MeasureSettings()) == "standard"
    assert mode_of(preset("quick").model_copy(update={"timeout_s": 60, "profile": False})) == (
        "quick"
    )
    assert mode_of({"min_runs": 7}) == "custom"
    assert [p.name for p in presets() if p.recommended] == ["publish", "table"]
    assert {p.name for p in presets() if p.kind == "table"} == {"table", "table-quick"}
    assert preset("publish").repeats >= 3 and preset("table").repeats >= 3
    with pytest.raises(KeyError, match="quick"):
        preset("nope")


def test_repeats_are_bounded() -> None:
    assert MeasureSettings().repeats == 1
    with pytest.raises(ValueError, match="repeats"):
        MeasureSettings(repeats=0)
    with pytest.raises(ValueError, match="repeats"):
        MeasureSettings(repeats=21)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc through psutil")
def test_host_load_sees_a_cpu_burning_process() -> None:
    burn = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        sample = host_load(0.3)
    finally:
        burn.kill()
        burn.wait()
    assert sample["method"] == "psutil" and sample["logical_cores"] == os.cpu_count()
    assert 0.3 <= sample["window_s"] < 1.0
    # the burner alone keeps most of one CPU busy; this process itself slept
    assert sample["other_cpus"] >= 0.7 and sample["self_cpus"] < 0.1
    assert sample["other_share"] == pytest.approx(sample["other_cpus"] / os.cpu_count(), abs=0.01)
