"""Generated vs exported networks: where the latency difference comes from, and its fix.

    python -m bench.table_exported [--space ofa-proxyless] [--resolution 128] [--n 12]
                                   [--runs 60] [--attribute 3]

For ``--n`` random archs of the space: the table's block sum (every block built by
``converters.blocks`` and timed alone), the generated network (``network_model``, what a
table's quality report measures), the network exported from a PyTorch module written like
the reference code (``converters.torch_reference``, ``torch.onnx.export``) and that export
normalised (``converters.onnx_normalize``). All on onnxruntime, 1 thread, the fastest of
``--runs`` runs, the three networks of an arch timed interleaved (so host load hits them
alike, in a shuffled order each round). Reports the exported / generated ratio before and after normalising, the bias of
the block sum on each kind, and (``--attribute K``) the per-op-type time of K archs from
onnxruntime's profiler: which ops the difference is made of. Writes
``bench/results/table_exported_<space>_<res>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from converters.blocks import block_model, network_model
from converters.onnx_normalize import normalize
from converters.torch_reference import exported_network
from latencylab.spaces import get_space
from latencylab.spaces.lut import naive_lut_sum

RESULTS = Path(__file__).resolve().parent / "results"


def session(model: Any, profile: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def fastest(sessions: list[ort.InferenceSession], runs: int, warmup: int = 5) -> list[float]:
    """The fastest run of each session (ms), the sessions timed in turn, run after run."""
    feeds = []
    for s in sessions:
        inp = s.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
        feeds.append({inp.name: x})
        for _ in range(warmup):
            s.run(None, feeds[-1])
    best = [float("inf")] * len(sessions)
    order = list(range(len(sessions)))
    shuffle = random.Random(0).shuffle
    for _ in range(runs):
        shuffle(order)  # no session always first (or last) in a round
        for i in order:
            t0 = time.perf_counter_ns()
            sessions[i].run(None, feeds[i])
            best[i] = min(best[i], (time.perf_counter_ns() - t0) / 1e6)
    return best


def op_times(model: Any, runs: int = 40) -> dict[str, float]:
    """Per op type: the sum over nodes of each node's fastest kernel time (ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(model, profile=os.path.join(tmp, "p"))
        inp = s.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
        for _ in range(runs):
            s.run(None, {inp.name: x})
        events = json.loads(Path(s.end_profiling()).read_text())
    per: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[(e["name"], e["args"]["op_name"])].append(e["dur"] / 1000)
    out: collections.Counter[str] = collections.Counter()
    for (_, op), d in per.items():
        out[op] += min(d[5:] or d)
    return dict(out)


def summary(xs: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(xs),
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--space", default="ofa-proxyless")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--attribute", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    space, res = get_space(args.space), args.resolution
    t0 = time.perf_counter()
    table: dict[str, float] = {}
    for b in space.expand(res):
        table[b.key] = 0.0 if b.is_noop else fastest([session(block_model(b))], 20)[0]
    print(f"{len(table)} blocks timed in {time.perf_counter() - t0:.0f} s", flush=True)
    rng = random.Random(args.seed)
    rows, ops = [], collections.defaultdict(lambda: collections.Counter())
    for i in range(args.n):
        arch = space.sample(rng)
        gen = network_model(space, arch, res)
        exp = exported_network(space, arch, res)
        norm, rewrites = normalize(exp)
        g, e, n = fastest([session(gen), session(exp), session(norm)], args.runs)
        lut = naive_lut_sum(space, table, arch, res)
        rows.append({"lut_ms": lut, "generated_ms": g, "exported_ms": e, "normalized_ms": n})
        print(
            f"arch {i:2d}: lut {lut:.3f} gen {g:.3f} exp {e:.3f} ({e / g:.3f}x) "
            f"norm {n:.3f} ({n / g:.3f}x) rewrites {rewrites}",
            flush=True,
        )
        if i < args.attribute:
            for kind, model in (("generated", gen), ("exported", exp), ("normalized", norm)):
                ops[kind].update(op_times(model))
    kinds = ("generated", "exported", "normalized")
    out = {
        "space": space.name,
        "resolution": res,
        "n": args.n,
        "cpu": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in ln
            ),
            platform.processor(),
        ),
        "loadavg": os.getloadavg(),
        "ratio_vs_generated": {
            k: summary([r[f"{k}_ms"] / r["generated_ms"] for r in rows]) for k in kinds[1:]
        },
        "lut_bias": {  # (lut - measured) / measured: negative = measured slower than the sum
            k: summary([(r["lut_ms"] - r[f"{k}_ms"]) / r[f"{k}_ms"] for r in rows]) for k in kinds
        },
        "op_ms_per_net": {
            k: {op: v / max(1, min(args.attribute, args.n)) for op, v in sorted(ops[k].items())}
            for k in kinds
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"table_exported_{space.name}_{res}.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("ratio_vs_generated", "lut_bias", "loadavg")}, indent=1))
    print(json.dumps(out["op_ms_per_net"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
