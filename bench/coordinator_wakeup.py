"""Submit-to-lease latency of a long-polling agent, on the same and across replicas.

    python -m bench.coordinator_wakeup [--samples 20] [--wait-s 20]
                                       [--coordinator-tree DIR ...] [--out FILE]

Two ``latencylab serve --no-local-agent`` processes (A and B) on one fresh private
PostgreSQL database (``bench.coordinator_env``), their defaults untouched. One simulated
device long-polls ``POST /agents/{id}/lease?wait_s=`` on B; once the long-poll waits (its
first attempt found nothing), one benchmark job is queued through A (across replicas) or
through B (same process), and the time from sending the submit to receiving the lease
answer is taken (``perf_counter_ns``); the device reports the job and the next sample
follows. Also the submit request's own time, so what the wake-up adds is visible. With
several ``--coordinator-tree`` values each is run in turn in the same session (A/B: e.g. a
``git archive`` of the commit before cross-replica notifications, whose long-polls find
jobs queued elsewhere only at their ``LATENCYLAB_LEASE_RECHECK_S`` re-check). Writes
``bench/results/coordinator-wakeup.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import coordinator_env as env
from bench.coordinator import PG_DEFAULT, _host
from bench.coordinator_report import quantiles_ms
from bench.fleet_sim import SIM_REPORT

RESULTS = Path(__file__).resolve().parent / "results"
SETTLE_S = (0.3, 1.6)
"""How long the long-poll is left waiting before the submit (its first attempt is done):
drawn uniformly, so the submit falls at any phase of the long-poll's re-check period."""


def _post(url: str, token: str, path: str, timeout: float, **kw: Any) -> httpx.Response:
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as c:
        return c.post(f"{url}/api/v1{path}", **kw)


def _register(url: str, token: str) -> int:
    body = {"name": "wakeup-probe", "device_class": "cpu", "runtimes": {"onnxruntime": "sim"},
            "attributes": env.SIM_ATTRIBUTES, "info": {"simulated": True}}  # fmt: skip
    r = _post(url, token, "/agents/register", 30, json=body)
    r.raise_for_status()
    return int(r.json()["id"])


def _sample(
    poll_url: str, submit_url: str, s: env.Seed, device: int, wait_s: float, rng: random.Random
) -> dict:
    """One long-poll on ``poll_url`` woken by one job queued through ``submit_url``."""
    agent = s.agent_tokens[0]
    lease = f"/agents/{device}/lease"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(_post, poll_url, agent, lease, wait_s + 30, params={"wait_s": wait_s})
        time.sleep(rng.uniform(*SETTLE_S))
        if poll.done():
            raise RuntimeError(f"the long-poll answered before the submit: {poll.result().text}")
        t0 = time.perf_counter_ns()
        queued = env.enqueue(submit_url, s.user_token, s.model_id, 1, timeout_s=30)
        t_submitted = time.perf_counter_ns()
        r = poll.result()
        t_leased = time.perf_counter_ns()
    if r.status_code != 200:
        raise RuntimeError(f"lease answered {r.status_code} {r.text} (wait_s={wait_s})")
    job = int(r.json()["id"])
    assert job == queued["job_ids"][0], (job, queued["job_ids"])
    done = _post(poll_url, agent, f"/agents/{device}/jobs/{job}/report", 30, json=SIM_REPORT)
    done.raise_for_status()
    return {"submit_to_lease_ns": t_leased - t0, "submit_request_ns": t_submitted - t0}


def run_tree(tree: Path, samples: int, wait_s: float, postgres_url: str) -> dict[str, Any]:
    report: dict[str, Any] = {
        "coordinator_code": env.tree_commit(tree),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": list(os.getloadavg()),
    }
    data_dir = Path(tempfile.mkdtemp(prefix="latencylab-bench-wakeup-"))
    try:
        with (
            env.private_postgres(postgres_url) as db,
            env.coordinators(data_dir, db, 2, {}, False, tree) as coords,
        ):
            a, b = coords.urls
            s = env.seed(a, data_dir, 1)
            device = _register(b, s.agent_tokens[0])
            rng = random.Random(12)
            for name, submit in (("same_process", b), ("across_replicas", a)):
                runs = [_sample(b, submit, s, device, wait_s, rng) for _ in range(samples)]
                report[name] = {
                    "submit_to_lease_ms": quantiles_ms([r["submit_to_lease_ns"] for r in runs]),
                    "submit_request_ms": quantiles_ms([r["submit_request_ns"] for r in runs]),
                }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    report["loadavg_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--wait-s", type=float, default=20.0)
    p.add_argument("--postgres-url", default=PG_DEFAULT)
    p.add_argument("--coordinator-tree", type=Path, action="append", default=[])
    p.add_argument("--out", type=Path, default=RESULTS / "coordinator-wakeup.json")
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.coordinator_tree] or [env.REPO]
    out: dict[str, Any] = {**_host(), "samples": args.samples, "wait_s": args.wait_s, "runs": []}
    for tree in trees:
        out["runs"].append(run_tree(tree, args.samples, args.wait_s, args.postgres_url))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'tree':<28} {'where':<16} {'submit->lease p50/p99/max ms':>30} {'submit p50 ms':>14}")
    for run in out["runs"]:
        code = run["coordinator_code"]
        label = f"{code['commit'][:10]}{' (snapshot)' if code.get('snapshot') else ''}"
        for where in ("same_process", "across_replicas"):
            r = run[where]
            q, sub = r["submit_to_lease_ms"], r["submit_request_ms"]
            print(f"{label:<28} {where:<16} "
                  f"{q['p50']:>10} / {q['p99']:>7} / {q['max']:>7} "
                  f"{sub['p50']:>14}")  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
