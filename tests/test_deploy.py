"""Deployment files: docker-compose.yml against the compose-spec schema (2 coordinator
replicas behind nginx, PostgreSQL, MinIO, a CPU agent), the proxy config, Dockerfile sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    exe = shutil.which("check-jsonschema", path=str(REPO / ".venv" / "bin")) or shutil.which(
        "check-jsonschema"
    )
    if exe is None:
        pytest.fail("check-jsonschema is not installed: it is part of the dev extra (make test)")
    out = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _compose() -> dict[str, Any]:
    import yaml

    spec: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return spec


REPLICAS = ("coordinator-1", "coordinator-2")


def test_compose_has_the_services_the_brief_names() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "minio-init", *REPLICAS, "proxy", "agent-cpu"} <= set(services)
    for name in REPLICAS:
        env = services[name]["environment"]
        url = urlsplit(env["LATENCYLAB_DATABASE_URL"])
        assert url.scheme == "postgresql+psycopg" and url.hostname == "postgres"
        assert env["LATENCYLAB_ARTIFACTS_URL"].startswith("s3://")
        assert env["LATENCYLAB_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert int(env["LATENCYLAB_WORKERS"]) >= 2
        assert "--no-local-agent" in services[name]["command"]
        assert services[name]["depends_on"]["minio-init"]["condition"] == (
            "service_completed_successfully"
        )
    assert services[REPLICAS[0]]["environment"] == services[REPLICAS[1]]["environment"]
    assert "agent-gpu:" in (REPO / "docker-compose.yml").read_text()  # the commented GPU agent


def test_minio_init_creates_the_bucket_and_the_coordinators_user() -> None:
    services = _compose()["services"]
    env = services[REPLICAS[0]]["environment"]
    bucket = urlsplit(env["LATENCYLAB_ARTIFACTS_URL"]).netloc
    script = " ".join(services["minio-init"]["command"])
    assert f"mc mb --ignore-existing local/{bucket}" in script
    user, secret = env["LATENCYLAB_S3_ACCESS_KEY_ID"], env["LATENCYLAB_S3_SECRET_ACCESS_KEY"]
    assert f"mc admin user add local {user} {secret}" in script
    assert f"--user {user}" in script


def test_the_proxy_config_balances_both_replicas() -> None:
    services = _compose()["services"]
    mount = next(v for v in services["proxy"]["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    conf_path = REPO / mount.split(":")[0]
    assert conf_path.is_file(), mount
    conf = conf_path.read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream is not None, "no upstream block"
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(2), re.M)
    port = services[REPLICAS[0]]["environment"]["LATENCYLAB_PORT"]
    assert sorted(servers) == [(name, port) for name in REPLICAS]
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert "proxy_request_buffering off;" in conf  # uploads stream through
    listen = re.search(r"listen\s+(\d+);", conf)
    assert listen is not None and services["proxy"]["ports"] == [f"{listen.group(1)}:8000"]
    agent = " ".join(services["agent-cpu"]["command"])
    assert agent.count("--server http://proxy:8000") == 2  # token create, then the agent


def test_compose_serve_command_uses_real_cli_options() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "latencylab", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    for name in REPLICAS:
        command = _compose()["services"][name]["command"]
        for opt in (c for c in command if c.startswith("--")):
            assert opt in help_text, f"{name} runs serve {opt}, which 'latencylab serve' lacks"
    assert "--workers" in help_text


def test_dockerfile_copies_only_existing_paths() -> None:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if m := re.match(r"COPY\s+(.+)\s+\S+$", line):
            for src in m.group(1).split():
                assert (REPO / src).exists(), f"Dockerfile copies missing {src}"


def test_compose_agent_command_uses_real_cli_options() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "latencylab", "agent", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    agent_command = " ".join(_compose()["services"]["agent-cpu"]["command"])
    assert "exec latencylab agent " in agent_command
    agent_part = agent_command.split("exec latencylab agent ")[1]
    for opt in set(re.findall(r"(--[a-z-]+)", agent_part)):
        assert opt in help_text, f"compose uses {opt}, which 'latencylab agent' does not take"
