"""Tables validated on networks exported from PyTorch too (``validate_exported``).

Unit part: the reference PyTorch modules (``converters.torch_reference``) export the
graph ops the reference code produces (``x.mean(3).mean(2)`` pooling, hand-written
h-swish / h-sigmoid), and ``converters.onnx_normalize`` rewrites them into the ops the
table measured, computing the same function (onnxruntime on both).

End to end (SQLite and PostgreSQL, a real coordinator and agent): the table's blocks are measured here with
onnxruntime (1 thread, fastest of 15 runs) and recorded as the device's entries, so the
build reuses them and only the validation networks go through the queue — 4 generated, 1
exported, 1 exported and normalised — and the quality report scores each kind.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from converters.blocks import block_model, network_model
from converters.onnx_normalize import normalize
from converters.torch_reference import SUPPORTED, exported_network, op_counts, reference_module
from db.models import Device, Model
from db.nas import TableEntry
from latencylab.spaces import get_space
from server.store.table_build import EXPORTED_SPACES
from tests.conftest import _env, cli, fresh_postgres_database, running_coordinator

RES = 128
QUICK = {
    "warmup_runs": 2,
    "min_runs": 10,
    "min_duration_s": 0.05,
    "max_duration_s": 0.5,
    "target_rel_ci": 0.05,
    "profile": False,
    "repeats": 1,
    "timeout_s": 120,
}
warnings.filterwarnings("ignore", module="torch.onnx")


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _same_function(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    x = np.random.default_rng(1).standard_normal((1, 3, RES, RES)).astype(np.float32)
    ya, yb = _run(a, x), _run(b, x)
    assert ya.shape == yb.shape == (1, 1000)
    np.testing.assert_allclose(yb, ya, rtol=1e-4, atol=1e-5 * float(np.abs(ya).max()))


def test_the_build_and_the_reference_modules_cover_the_same_spaces() -> None:
    assert tuple(SUPPORTED) == tuple(EXPORTED_SPACES)


@pytest.mark.parametrize("space_name", ["ofa-proxyless", "ofa-mbv3"])
def test_exported_graph_normalises_to_the_generated_ops(space_name: str) -> None:
    space = get_space(space_name)
    arch = space.sample(random.Random(2))
    gen = op_counts(network_model(space, arch, RES))
    exp = exported_network(space, arch, RES)
    raw = op_counts(exp)
    assert "BatchNormalization" not in raw  # torch.onnx.export folds BN in eval mode
    assert raw["ReduceMean"] >= 2 and "GlobalAveragePool" not in raw
    assert raw["Conv"] == gen["Conv"]
    norm, rewrites = normalize(exp)
    ops = op_counts(norm)
    assert "ReduceMean" not in ops and ops["GlobalAveragePool"] == gen["GlobalAveragePool"]
    assert rewrites["GlobalAveragePool"] == gen["GlobalAveragePool"]
    if space_name == "ofa-mbv3":  # OFA's Hswish / Hsigmoid, written out, become the ops
        assert raw["Div"] == gen["HardSwish"] + gen["HardSigmoid"] and "HardSwish" not in raw
        assert ops["HardSwish"] == gen["HardSwish"] == rewrites["HardSwish"]
        assert ops["HardSigmoid"] == gen["HardSigmoid"] == rewrites["HardSigmoid"]
        assert "Div" not in ops and "Clip" not in ops
    same = {k: v for k, v in ops.items() if k not in ("Reshape", "Flatten")}
    assert same == {k: v for k, v in gen.items() if k not in ("Reshape", "Flatten")}
    _same_function(exp, norm)


def test_unfolded_batchnorm_is_folded_into_the_conv(tmp_path: Path) -> None:
    space = get_space("ofa-proxyless")
    module = reference_module(space, space.sample(random.Random(4)), RES)
    path = tmp_path / "bn.onnx"
    with torch.no_grad():  # the legacy exporter without constant folding leaves BN
        torch.onnx.export(
            module,
            (torch.randn(1, 3, RES, RES),),
            path,
            dynamo=False,
            do_constant_folding=False,
            input_names=["input"],
        )
    raw = onnx.load(path)
    n_bn = op_counts(raw)["BatchNormalization"]
    assert n_bn == op_counts(raw)["Conv"]
    norm, rewrites = normalize(raw)
    assert rewrites["BatchNormalization folded"] == n_bn
    assert "BatchNormalization" not in op_counts(norm)
    _same_function(raw, norm)


def _seed_blocks(database_url: str, device_name: str) -> int:
    """Measure every block here and record it as the device's entry (status succeeded)."""
    space = get_space("ofa-proxyless")
    engine = create_engine(database_url)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    with Session(engine) as s:
        device = s.scalar(select(Device).where(Device.name == device_name))
        assert device is not None
        for b in space.expand(RES):
            ms = 0.0
            if not b.is_noop:
                import time

                sess = ort.InferenceSession(
                    block_model(b).SerializeToString(), so, providers=["CPUExecutionProvider"]
                )
                inp = sess.get_inputs()[0]
                x = np.zeros(inp.shape, np.float32)
                times = []
                for _ in range(18):
                    t0 = time.perf_counter_ns()
                    sess.run(None, {inp.name: x})
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                ms = min(times[3:])
            s.add(
                TableEntry(
                    device_id=device.id,
                    runtime="onnxruntime",
                    precision="fp32",
                    batch_size=1,
                    threads=1,
                    block_key=b.key,
                    block=b.to_dict(),
                    status="succeeded",
                    mean_ms=ms,
                    p50_ms=ms,
                    min_ms=ms,
                    var_ms2=0.0,
                    count=15,
                )
            )
        s.commit()
        n = len(space.expand(RES))
    engine.dispose()
    return n


@contextlib.contextmanager
def _database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'latencylab.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_table_build_reports_generated_and_exported_kinds(backend: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with (
        _database(backend, tmp_path) as url,
        running_coordinator(url, tmp_path / "data", converter=False) as live,
    ):
        n_blocks = _seed_blocks(url, live.agent_name)
        with live.http(live.user_token) as h:
            bad = h.post("/tables", json={"space": "fbnet", "validate_exported": 2})
            assert bad.status_code == 422 and "reference PyTorch" in bad.text
        env = _env({"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token})
        out = cli("table", "build", "--space", "fbnet", "--validate-exported", "2", env=env)
        assert out.returncode == 2 and "reference PyTorch" in out.stderr, out  # flag reaches it
        with live.http(live.user_token) as h:
            body = {
                "space": "ofa-proxyless",
                "resolution": RES,
                "device": "local",
                "threads": 1,
                "validate_n": 4,
                "validate_exported": 1,
                "settings": QUICK,
            }
            r = h.post("/tables", json=body)
        assert r.status_code == 202, r.text
        with live.client() as c:
            done = c.wait_table(r.json()["id"], timeout=300)
            assert done.status == "succeeded", (done.error, done.failed_blocks[:3])
            export = c.table_export(done.id)
            pred = c.predict(done.id, [v["arch"] for v in export.validation])
        p = done.progress
        assert p.blocks_reused == n_blocks and p.networks_total == p.networks_done == 6
        q = done.quality
        assert q is not None and q.n == 4  # the top-level figures: generated networks
        kinds = q.kinds
        assert set(kinds) == {"generated", "exported", "exported_normalized"}
        assert (kinds["generated"].n, kinds["exported"].n, kinds["exported_normalized"].n) == (
            4,
            1,
            1,
        )
        assert kinds["generated"].acc10 == q.acc10
        raw, norm = kinds["exported"], kinds["exported_normalized"]
        assert raw.ops["ReduceMean"] == 2 and "GlobalAveragePool" not in raw.ops
        assert norm.ops["GlobalAveragePool"] == 1 and "ReduceMean" not in norm.ops
        for k in (raw, norm):
            assert k.vs_generated is not None and k.vs_generated["n"] == 1
            assert 0.5 < k.vs_generated["median"] < 2.0
            assert len(k.points) == 1 and all(pt["measured_ms"] > 0 for pt in k.points)
            assert k.lut_sum is not None and 0 <= k.acc5 <= k.acc10 <= 1
        by_kind = [v["kind"] for v in export.validation]
        assert by_kind == ["generated"] * 4 + ["exported", "exported_normalized"]
        gen_archs = [v["arch"] for v in export.validation[:4]]
        assert [v["arch"] for v in export.validation[4:]] == gen_archs[:1] * 2  # paired
        assert all("validation" not in v["arch"] for v in export.validation)
        for v, s in zip(export.validation, pred.lut_sum_ms, strict=True):
            assert v["lut_sum_ms"] == pytest.approx(s, rel=1e-12)
        engine = create_engine(url)
        with Session(engine) as s:
            metas = [m.meta for m in s.scalars(select(Model).where(Model.kind == "network"))]
        engine.dispose()
        normalised = [m for m in metas if m.get("validation") == "exported_normalized"]
        assert len(normalised) == 1 and all(
            m["rewrites"] == {"GlobalAveragePool": 1} for m in normalised
        )
