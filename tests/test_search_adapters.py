"""The latency adapters inside Once-for-All's and Optuna's own search code.

A real latency table of ofa-proxyless at 128 px is measured here (every unique block built
by ``converters.blocks`` and timed with onnxruntime, 1 thread, the fastest of 15 runs) and
written as the SDK's table JSON export (``TableExport``). The examples then search with it
in fresh processes: OFA's ``EvolutionFinder`` (the ``ofa`` package, installed with
``--no-deps``; torchvision is replaced by a stub package on ``PYTHONPATH`` because OFA
imports it for data loading only and the installed torchvision does not load beside this
torch) and an Optuna study with ``constraints_func``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from converters.blocks import block_model, network_model
from latencylab.search import (
    GraphLatency,
    LatencyConstraint,
    OFAEfficiency,
    TableLatency,
    ofa_arch,
)
from latencylab.spaces import get_space
from latencylab.spaces.lut import naive_lut_sum
from latencylab.tables import TableExport, TableProgress

REPO = Path(__file__).resolve().parents[1]
RES = 128
SPACE = get_space("ofa-proxyless")
HAVE_OFA = importlib.util.find_spec("ofa") is not None
TORCHVISION_STUB = {
    "torchvision/__init__.py": "from . import transforms\n",
    "torchvision/transforms/__init__.py": (
        "from . import functional\n\n\nclass RandomResizedCrop:\n    pass\n\n\n"
        "class RandomCrop:\n    pass\n"
    ),
    "torchvision/transforms/functional.py": "",
}


def _session(model: Any) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def measure_ms(model: Any, runs: int = 15) -> float:
    """The fastest of ``runs`` timed runs after 3 warm-ups (perf_counter_ns), in ms."""
    sess = _session(model)
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    for _ in range(3):
        sess.run(None, {inp.name: x})
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        sess.run(None, {inp.name: x})
        best = min(best, (time.perf_counter_ns() - t0) / 1e6)
    return best


@pytest.fixture(scope="module")
def table_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A measured table in the format ``GET /tables/{id}?format=json`` returns."""
    entries: dict[str, dict[str, Any]] = {}
    for b in SPACE.expand(RES):
        ms = 0.0 if b.is_noop else measure_ms(block_model(b))
        entries[b.key] = {"mean": ms, "count": 15, "var": 0.0, "min_ms": ms, "ofa_key": b.ofa_key}
    n = len(entries)
    export = TableExport(
        id=1,
        space=SPACE.name,
        resolution=RES,
        device="this host",
        device_selector="local",
        runtime="onnxruntime",
        precision="fp32",
        batch_size=1,
        threads=1,
        status="succeeded",
        progress=TableProgress(done=n, total=n, blocks_done=n, blocks_total=n),
        settings={"statistic": "min"},
        entries=entries,
    )
    path = tmp_path_factory.mktemp("table") / "table.json"
    path.write_text(export.model_dump_json())
    return path


@pytest.fixture(scope="module")
def table(table_json: Path) -> TableLatency:
    return TableLatency.from_export(json.loads(table_json.read_text()))


def _budget(table: TableLatency, q: float = 0.3) -> float:
    """A budget that ``q`` of random archs meet (so the constraint binds)."""
    import random

    rng = random.Random(1)
    lat = sorted(table.predict_many([SPACE.sample(rng) for _ in range(400)]))
    return lat[int(q * len(lat))]


def _run(script: str, *args: str, extra_path: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_table_latency_matches_the_plain_block_sum(table: TableLatency) -> None:
    import random

    rng = random.Random(3)
    archs = [SPACE.sample(rng) for _ in range(50)]
    lut = table.predictor.table
    for arch, ms in zip(archs, table.predict_many(archs), strict=True):
        assert ms == pytest.approx(naive_lut_sum(SPACE, lut, arch, RES), rel=1e-12)
        assert table.predict_ms(arch) == ms > 0
    with pytest.raises(ValueError, match="not a latency-table export"):
        TableLatency.from_export({"entries": {}})


def test_ofa_samples_with_inactive_zeros_and_image_size(table: TableLatency) -> None:
    import random

    arch = SPACE.sample(random.Random(5))
    arch["d"] = [2, 2, 3, 4, 2, 1]
    sample = {**arch, "image_size": RES}
    zeroed = dict(sample, ks=list(arch["ks"]), e=list(arch["e"]))
    for j in (2, 3, 6, 7, 11, 18, 19):  # blocks beyond their stage's depth: OFA writes 0
        zeroed["ks"][j] = zeroed["e"][j] = 0
    eff = OFAEfficiency(table)
    assert eff.space is SPACE
    want = table.predict_ms(arch)
    assert eff.get_efficiency(sample) == pytest.approx(want, rel=1e-12)
    assert eff.get_efficiency(zeroed) == pytest.approx(want, rel=1e-12)
    assert ofa_arch(SPACE, zeroed)["ks"][2] == 3
    with pytest.raises(KeyError, match="no entry for block"):
        eff.get_efficiency({**arch, "image_size": 160})  # the table holds 128 only
    by_res = OFAEfficiency({RES: table})
    assert by_res.get_efficiency(sample) == pytest.approx(want, rel=1e-12)
    with pytest.raises(KeyError, match="no latency model for image_size 160; have: 128"):
        by_res.get_efficiency({**arch, "image_size": 160})
    with pytest.raises(TypeError, match="predict_ms"):
        OFAEfficiency(object(), space=SPACE)  # type: ignore[arg-type]


class MeasuredGraphs:
    """A graph-level predictor with the kernel predictor's ``predict_onnx`` shape: it
    measures the ONNX graph with onnxruntime (a real, if slow, prediction)."""

    def __init__(self) -> None:
        self.calls, self.last = 0, 0.0
        self.inputs: list[int] = []

    def predict_onnx(self, model: Any) -> dict[str, Any]:
        self.calls += 1
        self.inputs.append(model.graph.input[0].type.tensor_type.shape.dim[2].dim_value)
        self.last = measure_ms(model, runs=5)
        return {"latency_ms": self.last, "kernels": []}


def test_graph_latency_drops_into_ofa_efficiency() -> None:
    import random

    graphs = MeasuredGraphs()
    model = GraphLatency(graphs, lambda arch: network_model(SPACE, arch, RES))
    eff = OFAEfficiency(model, space="ofa-proxyless")
    arch = SPACE.sample(random.Random(9))
    first = eff.get_efficiency({**arch, "image_size": RES})
    assert first == graphs.last > 0 and graphs.calls == 1 and graphs.inputs == [RES]
    assert eff.get_efficiency({**arch, "image_size": RES}) == first  # cached
    assert graphs.calls == 1 and eff.calls == 2
    with pytest.raises(TypeError, match="predict_onnx"):
        GraphLatency(object(), lambda a: a)  # type: ignore[arg-type]


def test_latency_constraint_reads_user_attrs() -> None:
    class Trial:
        user_attrs: dict[str, Any] = {"latency_ms": 7.5}

    assert LatencyConstraint(5.0)(Trial()) == [2.5]
    Trial.user_attrs = {}
    assert LatencyConstraint(5.0)(Trial()) == [float("inf")]
    with pytest.raises(ValueError, match="budget_ms must be > 0"):
        LatencyConstraint(0)


@pytest.mark.skipif(not HAVE_OFA, reason="Once-for-All is not installed: pip install --no-deps ofa")
def test_ofa_evolution_finder_with_the_table(
    table_json: Path, table: TableLatency, tmp_path: Path
) -> None:
    for rel, text in TORCHVISION_STUB.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    budget = _budget(table)
    out = _run(
        "ofa_evolution_search.py",
        "--table-json",
        str(table_json),
        "--budget-ms",
        str(budget),
        "--population",
        "24",
        "--generations",
        "8",
        extra_path=tmp_path,
    )
    sample = out["best_sample"]
    assert sample["image_size"] == RES and len(sample["ks"]) == 21 and len(sample["d"]) == 6
    arch = ofa_arch(SPACE, sample)
    # what OFA recorded as the efficiency is the table's prediction, and it meets the budget
    assert out["latency_ms"] == pytest.approx(table.predict_ms(arch), rel=1e-12)
    assert out["latency_ms"] <= budget
    assert out["efficiency_calls"] >= 24 * 9  # every candidate went through get_efficiency
    assert out["best_valids"] == sorted(out["best_valids"])  # OFA's running best


def test_optuna_example_keeps_the_best_within_the_budget(
    table_json: Path, table: TableLatency
) -> None:
    budget = _budget(table)
    out = _run(
        "optuna_latency_constraint.py",
        "--table-json",
        str(table_json),
        "--budget-ms",
        str(budget),
        "--trials",
        "40",
    )
    assert out["trials"] == 40 and 0 < out["feasible"] <= 40
    assert out["latency_ms"] <= budget
    assert out["latency_ms"] == pytest.approx(table.predict_ms(out["best_arch"]), rel=1e-12)
    assert out["mmacs"] == out["best_feasible_mmacs"]  # Optuna's best is the best feasible
