"""The README quick start, literally: `make run` in a fresh copy of the repository with no
LatencyLab environment variables and the default relative data dir `./.latencylab`.

A relative data dir once broke every conversion under plain `make run` (the conversion
subprocess runs in its own work directory, so `.latencylab/...` stopped resolving) while
every test passed with absolute paths. These tests start the real `make run` from a copy of
the working tree (tracked and untracked, non-ignored files, as `git clone` would give plus
uncommitted work), reusing this checkout's already set-up `.venv`/`.venvs` so that setup is a
no-op, and follow the README with the CLI and the default token file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import QUICK_CLI, REPO, free_port

README_PORT = 8000


def _fresh_copy(dest: Path) -> Path:
    """The working tree as a fresh clone would have it (no data dir, no caches)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # Reuse the set-up environments; keep the setup stamp newer than its prerequisites.
    for venv in (".venv", ".venvs"):
        if (REPO / venv).is_dir():
            (dest / venv).symlink_to(REPO / venv)
    for name in ("pyproject.toml", "Makefile", "constraints.txt"):
        os.utime(dest / name, (0, 0))
    return dest


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENCYLAB_", "PYTHON"))}
    env.pop("PORT", None)
    return {**env, **extra}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _setup_stamp() -> Path:
    """The Makefile's setup stamp for the current pyproject/Makefile/constraints."""
    digest = hashlib.sha256(
        b"".join((REPO / n).read_bytes() for n in ("pyproject.toml", "Makefile", "constraints.txt"))
    ).hexdigest()[:12]
    return REPO / ".venv" / f".installed-{digest}"


@contextlib.contextmanager
def make_run(clone: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    # The copy shares this checkout's .venv: were its setup stale, `make run` would reinstall
    # the package from the copy (an editable install pointing into a temp dir). Never do that.
    if not _setup_stamp().is_file():
        pytest.skip(
            "this checkout's .venv is not set up for its current pyproject.toml/"
            "Makefile/constraints.txt: run `make setup` (make test does) first"
        )
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_online(url: str, clone: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    """The admin token once the coordinator answers and the local agent is online."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        token_file = clone / ".latencylab" / "admin.token"
        if token_file.is_file():
            token = token_file.read_text().strip()
            with contextlib.suppress(httpx.TransportError):
                r = httpx.get(f"{url}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
                classes = {d["class"] for d in r.json() if d["status"] == "online"}
                if r.status_code == 200 and {"cpu", "converter"} <= classes:
                    return token
        time.sleep(0.5)
    raise AssertionError(f"make run did not come up:\n{log.read_text()[-3000:]}")


def _cli(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/latencylab ARGS` as the README writes it, from the clone, no env overrides."""
    return subprocess.run(
        [str(clone / ".venv" / "bin" / "latencylab"), *args],
        cwd=clone, env=_clean_env(PYTHONPATH=str(clone), COLUMNS="100"),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_make_run_quick_start_converts_and_measures(tmp_path: Path) -> None:
    if not _port_free(README_PORT):
        pytest.skip(f"port {README_PORT} (the README's) is taken on this machine")
    clone = _fresh_copy(tmp_path / "latencylab")
    log = tmp_path / "make-run.log"
    url = f"http://127.0.0.1:{README_PORT}"
    from converters import zoo

    onnx_model = zoo.write_onnx("efficientnet", clone / "effnet.onnx")
    pt2_model = zoo.write_pt2("efficientnet", clone / "effnet.pt2")
    with make_run(clone, _clean_env(PYTHONPATH=str(clone)), log) as proc:
        token = _wait_online(url, clone, proc, log)
        assert f"LatencyLab is running at {url}" in log.read_text() and token in log.read_text()
        assert (clone / ".latencylab" / "latencylab.db").is_file()  # the default relative dir

        devices = httpx.get(
            f"{url}/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
        ).json()
        offered = sorted(
            {rt for d in devices if d["class"] == "cpu" for rt in d["runtimes"]}
        )  # every runtime the local agent offers: each must work from either upload
        assert {"onnxruntime", "tflite", "openvino"} <= set(offered), offered
        runtimes = [arg for rt in offered for arg in ("--runtime", rt)]

        def submit(model: Path) -> subprocess.CompletedProcess[str]:
            return _cli(clone, "submit", model.name, *runtimes, "--device", "local",
                        "--threads", "1", *QUICK_CLI, "--json")  # fmt: skip

        # Both submits at once (two users of one coordinator): the .pt2's conversions run on the
        # converter worker while the agent measures the ONNX upload's jobs.
        with ThreadPoolExecutor(max_workers=2) as pool:
            submitted = list(pool.map(submit, (onnx_model, pt2_model)))
        for model, res in zip((onnx_model, pt2_model), submitted, strict=True):
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
            bench = json.loads(res.stdout)["benchmark"]
            assert bench["status"] == "succeeded", (model.name, bench)
            assert sorted(r["runtime"] for r in bench["results"]) == offered
            assert all(r["status"] == "succeeded" and r["runs"] >= 20 for r in bench["results"])


def test_make_run_honours_latencylab_port(tmp_path: Path) -> None:
    """`LATENCYLAB_PORT` (named by the contract) reaches the server through `make run`."""
    clone = _fresh_copy(tmp_path / "latencylab")
    port = free_port()
    log = tmp_path / "make-run.log"
    env = _clean_env(PYTHONPATH=str(clone), LATENCYLAB_PORT=str(port))
    with make_run(clone, env, log) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise AssertionError(f"nothing answered on port {port}:\n{log.read_text()[-3000:]}")
        assert f"running at http://127.0.0.1:{port}" in _wait_banner(log)


def _wait_banner(log: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text()
        if "LatencyLab is running at" in text:
            return text
        time.sleep(0.2)
    return log.read_text()
