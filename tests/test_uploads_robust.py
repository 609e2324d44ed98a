"""Uploads and measurements under hostile or unlucky conditions.

* A coordinator whose data directory is a 24 MiB tmpfs the test mounts (root only; skipped
  with the reason where ``mount`` is refused): a full disk while streaming, at the last
  flush, or at a database commit is a 507 response with nothing left behind, never a
  400 that blames the client nor a reset connection.
* ONNX external data shorter than its tensors declare is refused at upload, naming the
  tensor and the file.
* Inputs are generated in their declared dtype, and inputs no device could hold are refused
  before a byte is allocated (at upload for a static size, at the agent for a batch).
* A steady state cut short by ``max_duration_s`` carries a warning in the result.
* Rejections never show server paths, only the uploaded file's name and archive entries.
"""

from __future__ import annotations

import contextlib
import errno
import io
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import create_engine, func, select

from agents.runners.base import InputsTooLarge, check_inputs_fit, random_tensor
from db.models import Model
from server.artifacts import LocalArtifactStore, StorageFull
from tests.conftest import FAST, REPO, SERVER_ENV, Live, _env, _stop, _wait_for, free_port

TINY_FS_MB = 24


# --------------------------------------------------------------------------- a tiny disk
def _mount_tmpfs(where: Path, size_mb: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a {size_mb} MiB tmpfs for the disk-full tests: {exc}")
    if out.returncode != 0:
        pytest.skip(
            f"cannot mount a {size_mb} MiB tmpfs for the disk-full tests (needs root and "
            f"CAP_SYS_ADMIN): {out.stderr.strip() or out.returncode}"
        )


def _umount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@contextlib.contextmanager
def tiny_fs(where: Path, size_mb: int = TINY_FS_MB) -> Iterator[Path]:
    _mount_tmpfs(where, size_mb)
    try:
        yield where
    finally:
        _umount(where)


def fill(root: Path, leave: int = 0) -> Path:
    """Fill the file system of ``root`` to the last byte, then free ``leave`` bytes."""
    filler = root / f"filler-{uuid.uuid4().hex[:6]}"
    with filler.open("wb", buffering=0) as fh:
        for chunk in (2**20, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    if leave:
        with filler.open("r+b") as fh:
            fh.truncate(max(filler.stat().st_size - leave, 0))
    return filler


@dataclass
class FullDiskServer:
    url: str
    data_dir: Path
    admin_token: str
    user_token: str
    database_url: str
    log: Path

    @property
    def tmp(self) -> Path:
        return self.data_dir / "artifacts" / "tmp"

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token or self.user_token}"},
            timeout=60,
        )

    def model_rows(self) -> int:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(Model)) or 0)
        finally:
            engine.dispose()

    def store_files(self) -> set[Path]:
        return {p for p in (self.data_dir / "artifacts").rglob("*") if p.is_file()}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def full_disk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FullDiskServer]:
    """A coordinator whose data dir (artifacts, and for SQLite the database) is a tmpfs."""
    base = tmp_path_factory.mktemp("fulldisk")
    with tiny_fs(base / "mnt") as mnt:
        data_dir = mnt / "data"
        if request.param == "sqlite":
            db_url = f"sqlite:///{data_dir / 'latencylab.db'}"
        else:
            db_url = str(request.getfixturevalue("postgres_database"))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = base / "server.log"  # off the tiny disk: the log must outlive it filling up
        env = _env({**SERVER_ENV, "LATENCYLAB_DATABASE_URL": db_url})
        cmd = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent",
               "--port", str(port), "--data-dir", str(data_dir)]  # fmt: skip
        with log.open("wb") as fh:
            server = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            _wait_for(url, server, log)
            admin = (data_dir / "admin.token").read_text().strip()
            with httpx.Client(
                base_url=url + "/api/v1", headers={"Authorization": f"Bearer {admin}"}
            ) as c:
                user = c.post("/tokens", json={"scope": "user", "name": "full disk"})
                user.raise_for_status()
            yield FullDiskServer(url, data_dir, admin, user.json()["token"], db_url, log)
        finally:
            _stop(server)


@pytest.fixture
def filled(full_disk: FullDiskServer) -> Iterator[Path]:
    """The tiny disk filled but for 256 KiB; every filler is removed afterwards."""
    try:
        yield fill(full_disk.data_dir, leave=256 * 1024)
    finally:
        for filler in full_disk.data_dir.glob("filler-*"):
            filler.unlink()


def _mlp_bytes() -> bytes:
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_upload_onto_a_full_disk_is_507_and_leaves_nothing(
    full_disk: FullDiskServer, filled: Path
) -> None:
    rows, files = full_disk.model_rows(), full_disk.store_files()
    body = _mlp_bytes() + b"\0" * (4 * 2**20)  # 4 MiB onto 256 KiB of free space
    with full_disk.http() as c:
        r = c.post("/models", files={"file": ("big.onnx", body)})
        assert r.status_code == 507, r.text
        assert r.json()["code"] == "insufficient_storage"
        assert "the server is out of disk space" in r.json()["detail"]
        assert "malformed" not in r.json()["detail"]
        assert c.get("/health").status_code == 200
        assert not list(full_disk.tmp.iterdir())
        assert full_disk.model_rows() == rows
        assert full_disk.store_files() == files
        filled.unlink()  # space again: the server recovers by itself
        r = c.post("/models", files={"file": ("m.onnx", _mlp_bytes())})
        assert r.status_code == 201, r.text
        assert c.get("/models").status_code == 200
    assert not list(full_disk.tmp.iterdir())
    assert full_disk.model_rows() == rows + 1


def test_a_full_disk_while_unpacking_an_archive_is_507_and_leaves_nothing(
    full_disk: FullDiskServer, tmp_path: Path
) -> None:
    """The zip fits, its unpacked copy for inspection does not."""
    onnx_file, data = _ext_model(tmp_path, shape=(300, 256))  # 307200 bytes of weights
    body = _zip({"ext.onnx": onnx_file.read_bytes(), "w.bin": data.read_bytes()})
    rows, files = full_disk.model_rows(), full_disk.store_files()
    fill(full_disk.data_dir, leave=len(body) + 128 * 1024)
    try:
        with full_disk.http() as c:
            r = c.post("/models", files={"file": ("ext.h5", b"\0" * len(body))})
            assert r.status_code == 415, r.text  # as many bytes stream in whole ...
            r = c.post("/models", files={"file": ("ext.zip", body)})
            assert r.status_code == 507, r.text  # ... unpacking them is what overflows
            assert "the server is out of disk space" in r.json()["detail"]
    finally:
        for filler in full_disk.data_dir.glob("filler-*"):
            filler.unlink()
    assert not list(full_disk.tmp.iterdir())  # neither the upload nor the unpack directory
    assert full_disk.model_rows() == rows
    assert full_disk.store_files() == files


def test_a_full_disk_at_the_last_flush_discards_the_temp_file(tmp_path: Path) -> None:
    """The final buffered chunk reaches the disk only at close(): ENOSPC there is a 507 too,
    and the temporary file is gone (it used to leak: close() sat outside the try)."""
    with tiny_fs(tmp_path / "mnt", 4) as mnt:
        store = LocalArtifactStore(mnt / "artifacts")
        filler = fill(mnt)
        pending = store.open_pending(limit=2**20)
        pending.write(b"x" * 100)  # buffered: no write(2) yet
        with pytest.raises(StorageFull) as info:
            pending.close()
        assert info.value.status_code == 507
        assert not list(store.tmp.iterdir())
        # ... and when commit() (flush, hash directory, rename into place) meets a full disk
        filler.unlink()
        pending = store.open_pending(limit=2**20)
        pending.write(b"y" * 100)
        fill(mnt)
        with pytest.raises(StorageFull):
            pending.commit()
        assert not list(store.tmp.iterdir())
        assert not [p for p in store.root.rglob("*") if p.is_file()]


def test_database_commit_on_a_full_disk_is_a_507(full_disk: FullDiskServer, filled: Path) -> None:
    """SQLite lives on the full disk: a write's commit fails after the route returned; the
    client gets a 507 saying so (PostgreSQL lives elsewhere: the write succeeds)."""
    fill(full_disk.data_dir)  # the last 256 KiB too
    with full_disk.http(full_disk.admin_token) as c:
        for _ in range(3):
            r = c.get("/models")  # reads keep working, or answer an error: never a reset
            assert r.status_code in (200, 503, 507), r.text
        r = c.post("/tokens", json={"scope": "user", "name": "x" * 200})
        if full_disk.database_url.startswith("sqlite"):
            assert r.status_code == 507, r.text
            assert r.json()["code"] == "insufficient_storage"
            assert "the server is out of disk space" in r.json()["detail"]
        else:
            assert r.status_code == 201, r.text
        assert c.get("/health").status_code == 200
    assert not list(full_disk.tmp.iterdir())


# --------------------------------------------------------------------------- external data
def _ext_model(
    root: Path, data_name: str = "w.bin", shape: tuple[int, int] = (64, 64)
) -> tuple[Path, Path]:
    """An ONNX model whose float32 weight (64x64: 16384 bytes) lives in ``data_name``."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal(shape).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shape[1]])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True, exist_ok=True)
    onnx.save(
        model,
        str(root / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=0,
    )
    return root / "ext.onnx", root / data_name


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0x20  # a symbolic link entry
            zf.writestr(info, target)
    return buf.getvalue()


def _no_server_paths(live: Live, detail: str) -> None:
    for leak in (str(live.data_dir), "/artifacts/", "inspect-", "upload-", "/tmp/"):
        assert leak not in detail, f"{leak!r} leaked into: {detail}"


def _store_files(live: Live) -> set[Path]:
    return {p for p in (live.data_dir / "artifacts").rglob("*") if p.is_file()}


def _reject(live: Live, filename: str, content: bytes, status: int = 422) -> str:
    """Upload, expect ``status``, nothing stored, no model row; returns the detail."""
    before = _store_files(live)
    with live.http(live.user_token) as c:
        n_models = len(c.get("/models").json())
        r = c.post("/models", files={"file": (filename, content)})
        assert r.status_code == status, r.text
        detail = str(r.json()["detail"])
        assert len(c.get("/models").json()) == n_models
    assert _store_files(live) == before
    assert not list((live.data_dir / "artifacts" / "tmp").iterdir())
    _no_server_paths(live, detail)
    return detail


def test_external_data_shorter_than_its_tensor_is_refused_at_upload(
    live: Live, tmp_path: Path
) -> None:
    onnx_file, data = _ext_model(tmp_path)
    half = data.read_bytes()[: data.stat().st_size // 2]
    detail = _reject(live, "half.zip", _zip({"ext.onnx": onnx_file.read_bytes(), "w.bin": half}))
    assert "tensor 'w'" in detail and "'w.bin'" in detail, detail
    assert "holds only 8192 bytes" in detail and "0..16384" in detail, detail


def test_external_data_in_a_subfolder_is_checked_and_accepted(live: Live, tmp_path: Path) -> None:
    onnx_file, data = _ext_model(tmp_path)
    good = _zip({"m/ext.onnx": onnx_file.read_bytes(), "m/w.bin": data.read_bytes()})
    with live.http(live.user_token) as c:
        r = c.post("/models", files={"file": ("sub.zip", good)})
    assert r.status_code == 201, r.text
    short = _zip({"m/ext.onnx": onnx_file.read_bytes(), "m/w.bin": data.read_bytes()[:100]})
    detail = _reject(live, "sub-short.zip", short)
    assert "tensor 'w' of m/ext.onnx" in detail and "'m/w.bin'" in detail, detail


def test_missing_external_data_file_names_the_entry_not_a_server_path(
    live: Live, tmp_path: Path
) -> None:
    onnx_file, _ = _ext_model(tmp_path)
    blob = onnx_file.read_bytes()
    detail = _reject(live, "nodata.zip", _zip({"ext.onnx": blob, "other.bin": b"\0" * 16}))
    assert "'w.bin', which is not in the uploaded archive" in detail, detail
    detail = _reject(live, "ext.onnx", blob)  # a lone .onnx that needs a data file
    assert "upload a .zip holding ext.onnx and its data files" in detail, detail


def test_external_data_of_a_constant_node_is_checked_too(tmp_path: Path) -> None:
    """Tensors in node attributes (a Constant's value) can live in the data file as well."""
    from onnx.external_data_helper import convert_model_to_external_data

    from server.model_checks import ModelCheckFailed, check_external_data

    value = numpy_helper.from_array(np.ones((32, 32), np.float32), "c")
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["c"], value=value),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ],
        "const",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    convert_model_to_external_data(
        model, location="c.bin", size_threshold=0, convert_attribute=True
    )
    onnx.save(model, str(tmp_path / "const.onnx"))
    loaded = onnx.load(str(tmp_path / "const.onnx"), load_external_data=False)
    check_external_data(loaded, tmp_path / "const.onnx", tmp_path, in_archive=True)
    (tmp_path / "c.bin").write_bytes((tmp_path / "c.bin").read_bytes()[:1000])
    with pytest.raises(ModelCheckFailed, match=r"tensor 'c' of const\.onnx needs bytes 0\.\.4096"):
        check_external_data(loaded, tmp_path / "const.onnx", tmp_path, in_archive=True)


def test_archive_rejections_name_the_uploaded_file(live: Live, tmp_path: Path) -> None:
    onnx_file, data = _ext_model(tmp_path)
    linked = _zip(
        {"ext.onnx": onnx_file.read_bytes(), "w.bin": data.read_bytes()},
        links={"evil.bin": "/etc/passwd"},
    )
    detail = _reject(live, "my-model.zip", linked)
    assert detail.startswith("my-model.zip holds a symbolic link: 'evil.bin'"), detail
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/archive_format", b"pt2")
        zf.writestr("model/data/weights", b"\0" * (16 * 2**20))
    detail = _reject(live, "bomb.pt2", bomb.getvalue())
    assert detail.startswith("bomb.pt2 looks like a zip bomb"), detail
    detail = _reject(live, "ckpt.pt2", _zip({"archive/data.pkl": b"\x80\x04N."}))
    assert detail.startswith("ckpt.pt2 is a zip archive but not a torch.export program"), detail
    detail = _reject(live, "broken.tflite", b"\0\0\0\0TFL3" + b"\0" * 64)  # a subprocess reads it
    assert "not a valid TFLite model" in detail, detail


# --------------------------------------------------------------------------- inputs
def _relu_model(shape: list[int | str], elem: int = TensorProto.FLOAT) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_huge_static_inputs_are_refused_at_upload(live: Live) -> None:
    detail = _reject(live, "huge_dims.onnx", _relu_model([1, 3, 100000, 100000]))
    assert "the model's inputs need 111.8 GiB for one inference at batch size 1" in detail
    assert "'x' [1, 3, 100000, 100000] of float32" in detail and "16.0 GiB" in detail, detail


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
)
def test_random_inputs_are_made_in_their_declared_dtype(dtype: str) -> None:
    import tracemalloc

    want = np.dtype(dtype)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        arr = random_tensor(rng, [1000, 1000], want)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert arr.dtype == want and arr.shape == (1000, 1000)
    # no float64 (8 MB) temporary: at most the array itself plus a float32 staging copy
    assert peak <= 1000 * 1000 * max(want.itemsize, 4 if want.kind == "f" else 0) * 2 + 2**16


def test_inputs_over_the_device_memory_are_refused_before_allocating() -> None:
    with pytest.raises(InputsTooLarge) as info:
        check_inputs_fit(224 * 2**30, memory=int(23.4 * 2**30))
    assert str(info.value) == "inputs need 224.0 GiB, this device has 23.4 GiB of memory"
    with pytest.raises(InputsTooLarge, match=r"inputs need 111\.8 GiB, this device has"):
        random_tensor(np.random.default_rng(0), [1, 3, 100000, 100000], np.dtype("float32"))


def test_agent_refuses_a_batch_whose_inputs_exceed_its_memory(live: Live, tmp_path: Path) -> None:
    """192 MiB per sample, batch 4096: 768 GiB. The agent says so instead of dying."""
    path = tmp_path / "wide.onnx"
    path.write_bytes(_relu_model(["N", 3, 4096, 4096]))
    with live.client() as c:
        m = c.upload_model(path)
        bench = c.benchmark(m.id, [{"runtime": "onnxruntime", "batch_size": 4096}], FAST)
        done = c.wait(bench.id, timeout=300)
    assert done.status == "failed"
    error = done.results[0].error if done.results else done.jobs[0].error
    assert error is not None and "inputs need 768.0 GiB, this device has" in error, error
    assert "GiB of memory" in error


# --------------------------------------------------------------------------- short runs
def test_a_run_stopped_before_min_runs_carries_a_warning(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    path.write_bytes(_relu_model([1, 64]))
    settings = {
        "warmup_runs": 0,
        "min_runs": 1_000_000,  # unreachable in 0.2 s: max_duration_s stops it first
        "max_runs": 1_000_000,
        "min_duration_s": 0,
        "max_duration_s": 0.2,
        "profile": False,
        "timeout_s": 120,
    }
    with live.client() as c:
        m = c.upload_model(path)
        done = c.wait(c.benchmark(m.id, [{"runtime": "onnxruntime"}], settings).id, timeout=300)
    assert done.status == "succeeded", done.jobs
    r = done.results[0]
    assert r.stop_reason == "max_duration" and r.runs < 1_000_000
    assert len(r.warnings) == 1, r.warnings
    assert f"only {r.runs} of the 1000000 required steady-state runs (min_runs)" in r.warnings[0]
    assert "max_duration_s=0.2 stopped the run first" in r.warnings[0]
    out = subprocess.run(
        [sys.executable, "-m", "latencylab", "results", str(done.id)],
        cwd=REPO,
        env={
            **_env({"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token}),
            "COLUMNS": "250",  # room for every column of the table
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join((out.stdout + out.stderr).split())  # rich wraps long lines
    assert "succeeded (warning)" in text, text
    assert f"result {r.id} (onnxruntime on {r.device}) warning: only {r.runs} of the" in text
