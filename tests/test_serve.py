"""`latencylab serve` as `make run` starts it, the SDK's light imports, the OpenAPI text."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import QUICK_CLI, REPO, _env, _stop, cli, free_port


def test_serve_starts_coordinator_and_local_agent(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "latencylab",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data),
            ],
            cwd=REPO,
            env=_env({}),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        devices: list[dict] = []
        while time.monotonic() < deadline and not devices:
            assert proc.poll() is None, log.read_text()
            token_file = data / "admin.token"
            if token_file.is_file():
                token = token_file.read_text().strip()
                try:
                    r = httpx.get(
                        f"{url}/api/v1/devices", headers={"Authorization": f"Bearer {token}"}
                    )
                    devices = (
                        [d for d in r.json() if d["status"] == "online"]
                        if r.status_code == 200
                        else []
                    )
                except httpx.TransportError:
                    pass
            time.sleep(0.3)
        assert devices, log.read_text()
        assert (data / "admin.token").stat().st_mode & 0o777 == 0o600
        out = log.read_text()
        assert f"LatencyLab is running at {url}" in out and token in out

        # The quick start, as written: `latencylab submit ... --device local` with no token given.
        cli_env = {
            "LATENCYLAB_SERVER": url,
            "LATENCYLAB_DATA_DIR": str(data),
            "PATH": "/usr/bin:/bin",
        }
        res = cli("submit", str(model_files["mlp"]), "--device", "local", *QUICK_CLI, "--json",
                  env=cli_env)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["benchmark"]["status"] == "succeeded"

        user = cli("token", "create", "--scope", "user", env=cli_env, timeout=60)
        assert user.returncode == 0, user.stderr
        tok = user.stdout.strip()
        assert tok.startswith("llu_")
        r = httpx.get(f"{url}/api/v1/tokens/me", headers={"Authorization": f"Bearer {tok}"})
        assert r.json()["scope"] == "user"
    finally:
        _stop(proc)
    # The local agent went down with the server.
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--server {url}" not in ps


def test_sdk_imports_no_server_or_runtime_dependencies() -> None:
    code = (
        "import sys, latencylab, latencylab.cli, latencylab.spaces;"
        "heavy = {'fastapi','sqlalchemy','onnx','onnxruntime','numpy','torch','uvicorn','alembic'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_route_is_described_in_openapi() -> None:
    from server.app import create_app
    from server.config import Settings

    spec = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    missing = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if not (op.get("description") or "").strip()
    ]
    assert not missing, missing
    assert "/api/v1/health" in spec["paths"] and "/api/v1/models" in spec["paths"]
    upload = spec["paths"]["/api/v1/models"]["post"]["requestBody"]["content"][
        "multipart/form-data"
    ]
    assert set(upload["schema"]["properties"]) == {"file", "name", "metadata"}
