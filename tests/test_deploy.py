"""Deployment files: docker-compose.yml against the compose-spec schema (2 coordinator
replicas behind nginx, PostgreSQL, MinIO, a converter worker, a CPU agent), the proxy config, the
Dockerfile: its sources and the pip steps of each image (deploy/install.sh, dry-run) against the
Makefile's."""

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


def test_compose_converter_command_uses_real_cli_options() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "latencylab", "converter", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    service = _compose()["services"]["converter"]
    assert service["image"] == _compose()["services"][REPLICAS[0]]["image"]  # the toolchain image
    command = " ".join(service["command"])
    assert "--scope agent" in command and "--server http://proxy:8000" in command
    part = command.split("exec latencylab converter ")[1]
    for opt in set(re.findall(r"(--[a-z-]+)", part)):
        assert opt in help_text, f"compose uses {opt}, which 'latencylab converter' does not take"


# ------------------------------------------------------------------ images and their extras
INSTALL = REPO / "deploy" / "install.sh"


def _install(extras: str) -> subprocess.CompletedProcess[str]:
    """deploy/install.sh in dry-run mode: the pip commands it would run, one a line."""
    env = {"DRY_RUN": "1", "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", str(INSTALL), extras], capture_output=True, text=True, timeout=60, env=env
    )


def _makefile() -> tuple[str, list[str]]:
    """The Makefile's torch pin and its --no-deps group (NODEPS)."""
    text = (REPO / "Makefile").read_text()
    torch = re.search(r"pip install -q torch==(\S+)", text)
    nodeps = re.search(r"^NODEPS\s*:=\s*(.+)$", text, re.M)
    assert torch and nodeps
    return torch.group(1), nodeps.group(1).split()


def _image_extras() -> dict[str, str]:
    """image -> EXTRAS, from the compose build args and the Dockerfile's default."""
    default = re.search(r"^ARG EXTRAS=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert default, "the Dockerfile takes no EXTRAS build arg"
    out = {"Dockerfile default": default.group(1)}
    for name, service in _compose()["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            out[service.get("image", name)] = build["args"]["EXTRAS"]
    return out


def test_the_dockerfile_installs_its_extras_through_deploy_install() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'^RUN .*bash deploy/install\.sh "\$\{EXTRAS\}"$', dockerfile, re.M)
    assert "COPY deploy/install.sh deploy/install.sh" in dockerfile
    assert re.search(r"^COPY .*constraints\.txt", dockerfile, re.M)
    images = _image_extras()
    assert images["Dockerfile default"] == images["latencylab:latest"]  # the coordinator image
    coordinator = set(images["latencylab:latest"].split(","))
    assert {"server", "s3", "convert", "executorch"} <= coordinator
    agent = set(images["latencylab-agent:latest"].split(","))
    assert {"agent", "onnxruntime", "tflite", "openvino", "torch", "executorch"} <= agent
    assert "server" not in agent  # an agent image runs no coordinator
    services = _compose()["services"]
    assert services["agent-cpu"]["image"] == "latencylab-agent:latest"


@pytest.mark.parametrize("image", ["latencylab:latest", "latencylab-agent:latest"])
def test_image_pip_steps_are_the_makefiles(image: str) -> None:
    extras = _image_extras()[image]
    out = _install(extras)
    assert out.returncode == 0, out.stderr
    steps = out.stdout.splitlines()
    torch_pin, nodeps = _makefile()
    wanted = set(extras.split(","))
    # torch first, at the Makefile's version, the CPU build (constraints.txt pins +cpu)
    assert steps[0].endswith(f"-m pip install --index-url https://download.pytorch.org/whl/cpu torch=={torch_pin}")  # fmt: skip
    assert f"torch=={torch_pin}+cpu" in (REPO / "constraints.txt").read_text().split()
    assert steps[1].endswith(f"-m pip install -c constraints.txt -e .[{extras}]")
    group = steps[2].split("--no-deps -c constraints.txt ")[1].split()
    assert set(group) <= set(nodeps)  # the Makefile's --no-deps group, the part these extras need
    assert ("executorch" in group) == ("executorch" in wanted)
    assert ("litert-torch" in group) == ("convert" in wanted)
    assert (steps[-1] == "bash converters/envs/setup_onnx2tf.sh") == ("convert" in wanted)


def test_install_covers_the_whole_makefile_group_and_refuses_unknown_extras() -> None:
    _, nodeps = _makefile()
    everything = _install("convert,executorch,dev")
    assert everything.returncode == 0, everything.stderr
    group = everything.stdout.splitlines()[2].split("--no-deps -c constraints.txt ")[1].split()
    assert sorted(group) == sorted(nodeps)  # a name added to the Makefile must be added here
    plain = _install("agent,onnxruntime")
    assert plain.returncode == 0 and plain.stdout.splitlines() == [
        f"{sys.executable} -m pip install -c constraints.txt -e .[agent,onnxruntime]"
    ]  # no torch, no --no-deps group
    typo = _install("agent,tflit")
    assert typo.returncode == 2 and "unknown extra 'tflit'" in typo.stderr
    assert "tflite" in typo.stderr  # the declared extras are listed
