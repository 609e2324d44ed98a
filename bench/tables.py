"""Latency-table benchmark: build a table end to end, then time predictions and score it.

    python -m bench.tables [--space ofa-proxyless] [--resolution 224] [--validate-n 100]
                           [--serve DIR | --server URL --token T] [--fresh]

Builds (or reuses) a table through the API on one device (default ``local``, onnxruntime,
1 thread), waits for its validation, then reports: block-phase time per block, validation
time per network, server predict throughput (one batch POST) and SDK local throughput
(``Client.latency_table`` -> ``LocalPredictor``), the quality report (acc5 / acc10 / RMSPE /
Spearman of the plain LUT sum and of the calibrated predictor), and the largest difference
between ``lut_sum_ms`` and OFA's own key-summing over the ``ofa-yaml`` export.
``--serve DIR`` starts a private coordinator + local agent in DIR for the run.
Writes ``bench/results/tables.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def private_server(data_dir: Path, port: int = 18799) -> Iterator[tuple[str, str]]:
    """``latencylab serve`` (coordinator + local agent) in ``data_dir``; yields (url, token)."""
    import httpx

    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    log = (data_dir / "serve.log").open("wb")
    cmd = [sys.executable, "-m", "latencylab", "serve", "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--data-dir", str(data_dir)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coordinator did not start; see {data_dir / 'serve.log'}")
            time.sleep(0.3)
        token = (data_dir / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as c:
            while not any(
                d["status"] == "online" and "onnxruntime" in d["runtimes"]
                for d in c.get("/devices").json()
            ):
                time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def run(url: str | None, token: str | None, args: argparse.Namespace) -> dict[str, Any]:
    from latencylab import Client
    from latencylab.spaces import get_space, lut_sum_ofa_style

    space = get_space(args.space)
    out: dict[str, Any] = {"space": args.space, "resolution": args.resolution}
    with Client(server=url, token=token, timeout=600) as c:
        t0 = time.monotonic()
        t = c.create_table(
            args.space,
            device=args.device,
            runtime=args.runtime,
            resolution=args.resolution,
            threads=args.threads,
            validate_n=args.validate_n,
            fresh=args.fresh,
        )
        print(f"table {t.id}: {t.progress.blocks_total} blocks, {t.progress.blocks_reused} reused")
        last = ""

        def show(tb: Any) -> None:
            nonlocal last
            line = f"  {tb.status}: {tb.progress.done}/{tb.progress.total}"
            if line != last:
                print(line, flush=True)
                last = line

        t = c.wait_table(t.id, timeout=args.timeout, poll_s=2, on_update=show)
        wall = time.monotonic() - t0

        measured = t.progress.blocks_total - t.progress.blocks_reused
        val_s = None
        if t.finished_at and t.created_at and t.build_seconds is not None:
            val_s = (t.finished_at - t.created_at).total_seconds() - t.build_seconds
        out.update(
            table_id=t.id,
            status=t.status,
            device=t.device,
            runtime=t.runtime,
            threads=t.threads,
            settings=t.settings,
            blocks=t.progress.blocks_total,
            blocks_measured=measured,
            blocks_reused=t.progress.blocks_reused,
            block_phase_s=t.build_seconds,
            s_per_block=(t.build_seconds / measured) if t.build_seconds and measured else None,
            validation_s=val_s,
            s_per_network=(val_s / max(1, t.progress.networks_total)) if val_s else None,
            wall_s=wall,
            quality=t.quality.model_dump() if t.quality else None,
            calibration=t.calibration,
        )
        rng = random.Random(1)
        archs = [space.sample(rng) for _ in range(args.predict_n)]
        t1 = time.perf_counter()
        server = c.predict(t.id, archs)
        out["server_predict_archs_per_s"] = len(archs) / (time.perf_counter() - t1)
        t1 = time.perf_counter()
        local = c.latency_table(t.id)
        out["sdk_download_s"] = time.perf_counter() - t1
        big = archs * max(1, args.local_n // len(archs))
        t1 = time.perf_counter()
        lat, _ = local.predict(big)
        out["sdk_local_archs_per_s"] = len(big) / (time.perf_counter() - t1)
        out["sdk_matches_server"] = max(
            abs(a - b) for a, b in zip(lat[: len(archs)], server.latency_ms, strict=True)
        )
        if args.space.startswith("ofa"):
            import yaml

            ofa = yaml.safe_load(c.export_table(t.id, "ofa-yaml"))
            diffs = [
                abs(lut_sum_ofa_style(space, a, ofa, args.resolution) - s)
                for a, s in zip(archs[:1000], server.lut_sum_ms, strict=False)
            ]
            out["ofa_yaml_max_abs_diff_ms"] = max(diffs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--space", default="ofa-proxyless")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--device", default="local")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--validate-n", type=int, default=100)
    ap.add_argument("--predict-n", type=int, default=10_000, help="archs per server predict")
    ap.add_argument("--local-n", type=int, default=200_000, help="archs for the SDK timing")
    ap.add_argument("--fresh", action="store_true", help="new table even if one exists")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--server")
    ap.add_argument("--token")
    ap.add_argument("--serve", type=Path, help="start a private coordinator + agent here")
    ap.add_argument("--out", type=Path, default=RESULTS / "tables.json")
    args = ap.parse_args()
    if args.serve:
        with private_server(args.serve) as (url, token):
            res = run(url, token, args)
    else:
        res = run(args.server, args.token, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
