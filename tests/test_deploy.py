"""Deployment files: docker-compose.yml against the compose-spec schema, Dockerfile sources."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

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


def test_compose_has_the_services_the_brief_names() -> None:
    import yaml

    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {"postgres", "coordinator", "agent-cpu"} <= set(spec["services"])
    env = spec["services"]["coordinator"]["environment"]
    assert env["LATENCYLAB_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "agent-gpu:" in (REPO / "docker-compose.yml").read_text()  # the commented GPU agent


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
    compose = (REPO / "docker-compose.yml").read_text()
    agent_block = compose.split("agent-cpu:")[1].split("# GPU agent")[0]
    for opt in set(re.findall(r"(--[a-z-]+)", agent_block)) - {"--scope", "--server", "--token"}:
        assert opt in help_text, f"compose uses {opt}, which 'latencylab agent' does not take"
