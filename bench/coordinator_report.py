"""What ``bench/coordinator.py`` computes from a run's logs, and its table: latency
quantiles, lease overlaps (double leases) from the client's log, the Markdown table."""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

from bench.fleet_sim import LeaseEvent, ReportEvent


def quantiles_ms(values_ns: list[int]) -> dict[str, float | int | None]:
    """n, p50, p99, max and mean in ms (nearest rank)."""
    if not values_ns:
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
    v = sorted(values_ns)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, int(q * len(v) + 0.999999) - 1))] / 1e6

    return {
        "n": len(v),
        "p50": round(rank(0.50), 3),
        "p99": round(rank(0.99), 3),
        "max": round(v[-1] / 1e6, 3),
        "mean": round(sum(v) / len(v) / 1e6, 3),
    }


def lease_overlaps(leases: list[LeaseEvent], reports: list[ReportEvent]) -> dict[str, int]:
    """Jobs handed to a second device while the first held them, from the client's logs.

    ``double_leases``: a second device got the job before the first device had even sent its
    report and before the first lease's expiry (unambiguous). ``second_device_before_expiry``:
    any second device before that expiry (a correct coordinator never leases a running or
    finished job). ``requeued_after_expiry``: a second device after the first lease expired
    (the normal requeue). ``same_attempt_twice``: two devices given the same attempt number."""
    sent: dict[tuple[int, str], list[int]] = defaultdict(list)
    for r in reports:
        sent[(r.job_id, r.device)].append(r.sent_ns)
    for times in sent.values():
        times.sort()
    by_job: dict[int, list[LeaseEvent]] = defaultdict(list)
    for e in sorted(leases, key=lambda e: e.at_ns):
        by_job[e.job_id].append(e)
    out = Counter(
        double_leases=0, second_device_before_expiry=0, requeued_after_expiry=0,
        same_attempt_twice=0,
    )  # fmt: skip
    for job_id, events in by_job.items():
        for prev, cur in itertools.pairwise(events):
            if prev.device == cur.device:
                continue
            if cur.attempt == prev.attempt:
                out["same_attempt_twice"] += 1
            if cur.received_at >= prev.expires_at:
                out["requeued_after_expiry"] += 1
                continue
            out["second_device_before_expiry"] += 1
            times = sent.get((job_id, prev.device), [])
            i = bisect_left(times, prev.at_ns)
            if i == len(times) or times[i] > cur.at_ns:
                out["double_leases"] += 1
    return dict(out)


COLUMNS = (
    "backend", "procs", "agents", "jobs", "done", "wall s", "jobs/s", "lease p50 / p99 ms",
    "report p50 / p99 ms", "non-2xx", "hb 409", "transport", "503 RA/no", "double lease (2nd dev.)",
    "bad result", "over attempts", "unfinished", "collapsed", "load",
)  # fmt: skip


def row(r: dict[str, Any]) -> list[str]:
    cfg, run, audit = r["config"], r["run"], r["audit"]
    lat = r["latency_ms"]
    non2xx = sum(
        n
        for endpoint, codes in r["status_codes"].items()
        for code, n in codes.items()
        if code[0] != "2" and endpoint != "heartbeat"
    )
    hb_lost = r["status_codes"]["heartbeat"].get("409", 0)
    transport = sum(sum(k.values()) for k in r["transport_errors"].values())
    ra = sum(v["with_retry_after"] for v in r["unavailable_503"].values())
    no_ra = sum(v["without_retry_after"] for v in r["unavailable_503"].values())
    wall = f"{run['wall_s']:.1f}"
    if run["collapsed"]:
        wall += f" of {run['phase_s']:.0f}"
    collapsed = "no"
    if run["collapsed"]:
        collapsed = "yes" if run["phase_reached"] == "run" else f"yes ({run['phase_reached']})"
    return [
        cfg["backend"], str(cfg["processes"]), str(cfg["agents"]), str(audit["jobs_in_db"]),
        str(run["jobs_reported"]), wall, f"{run['jobs_per_s']:.1f}",
        f"{_ms(lat['lease']['p50'])} / {_ms(lat['lease']['p99'])}",
        f"{_ms(lat['report']['p50'])} / {_ms(lat['report']['p99'])}",
        str(non2xx), str(hb_lost), str(transport), f"{ra}/{no_ra}", f"{r['leases']['double_leases']} ({r['leases']['second_device_before_expiry']})",
        str(audit["jobs_with_suspect_results"]), str(audit["attempts_over_max"]),
        str(audit["not_finished"]), collapsed, f"{r['loadavg_start'][0]:.1f}",
    ]  # fmt: skip


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def table(reports: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in reports]
    return "\n".join(lines)
