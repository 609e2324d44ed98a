"""A runtime is one declaration (latencylab.runtimes): the schema's runtime names, the options
models, the coordinator's format rules, the agents' runner registry and the converter's
validation are derived from it. A dummy runtime declared only by ``LATENCYLAB_EXTRA_RUNTIMES``
is benchmarked end to end through a real coordinator and a real agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from latencylab.runtimes import (
    BUILTIN,
    RUNTIMES,
    RuntimeDecl,
    Runtimes,
    RuntimeSettings,
    load_runtimes,
)
from tests.conftest import AGENT_ENV, FAST, REPO, SERVER_ENV, _env, _stop, _wait_for, free_port
from tests.dummy_options import DummyOptions

DUMMY = {
    "name": "numpydummy",
    "format": "onnx",
    "extra": "agent",
    "runner": "tests.dummy_runtime:DummyRunner",
    "modules": ["numpy"],
    "options": "tests.dummy_options:DummyOptions",
}


def test_everything_that_lists_runtimes_is_derived_from_the_declarations() -> None:
    from typing import get_args

    from agents.runners import REGISTRY
    from latencylab.conversions import TARGETS
    from latencylab.schemas import RUNTIMES as SCHEMA_RUNTIMES
    from latencylab.schemas import Runtime
    from server.store.conversions import NATIVE_RUNTIMES, RUNTIME_FORMAT

    names = tuple(d.name for d in BUILTIN)
    assert get_args(Runtime) == SCHEMA_RUNTIMES == RUNTIMES.names == names
    assert set(REGISTRY) == set(names)
    assert REGISTRY["executorch"].target == "agents.runners.executorch:ExecuTorchRunner"
    assert {d.name: d.target for d in BUILTIN if d.target} == RUNTIME_FORMAT
    assert NATIVE_RUNTIMES["onnx"] == {"onnxruntime", "pytorch"}
    assert NATIVE_RUNTIMES["executorch"] == {"executorch"} and "tensorrt" not in NATIVE_RUNTIMES
    assert set(TARGETS) == {d.target for d in BUILTIN if d.target}


def test_a_declaration_added_in_process_is_a_new_registry() -> None:
    decl = RuntimeDecl.model_validate(DUMMY)
    assert decl.options is DummyOptions  # 'module:Class' imported by the declaration
    more = RUNTIMES.with_runtime(decl)
    assert "numpydummy" in more and "numpydummy" not in RUNTIMES  # nothing was mutated
    assert more.native_runtimes["onnx"] == {"onnxruntime", "pytorch", "numpydummy"}
    assert "numpydummy" not in more.runtime_format  # no converter target: native uploads only
    assert more.options["numpydummy"] is DummyOptions
    with pytest.raises(ValueError, match="declared twice: numpydummy"):
        more.with_runtime(decl)
    from_settings = load_runtimes(RuntimeSettings(extra_runtimes=[decl]))
    assert from_settings.names == (*RUNTIMES.names, "numpydummy")
    assert isinstance(from_settings, Runtimes)
    with pytest.raises(ValidationError):
        RuntimeDecl.model_validate({**DUMMY, "name": "Bad Name"})
    with pytest.raises(ValidationError):
        RuntimeDecl.model_validate({**DUMMY, "options": "tests.dummy_options:nothing_here"})


def test_this_process_does_not_know_the_dummy() -> None:
    from latencylab.schemas import Target

    with pytest.raises(ValidationError, match="executorch"):  # the allowed names are listed
        Target(runtime="numpydummy")


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A coordinator and an agent (subprocesses) that both declare the dummy runtime."""
    data = tmp_path_factory.mktemp("declared")
    extra = {"LATENCYLAB_EXTRA_RUNTIMES": json.dumps([DUMMY])}
    url = f"http://127.0.0.1:{free_port()}"
    log = data / "server.log"
    env = _env({**SERVER_ENV, **extra, "LATENCYLAB_DATABASE_URL": f"sqlite:///{data / 'db.sqlite'}"})  # fmt: skip
    argv = [sys.executable, "-m", "latencylab", "serve", "--no-local-agent",
            "--port", url.rsplit(":", 1)[1], "--data-dir", str(data)]  # fmt: skip
    with log.open("wb") as fh:
        server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    agent = None
    try:
        _wait_for(url, server, log)
        admin = (data / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            tokens = {s: c.post("/tokens", json={"scope": s, "name": s}).json()["token"]
                      for s in ("user", "agent")}  # fmt: skip
        alog = data / "agent.log"
        cmd = [sys.executable, "-m", "latencylab", "agent", "--server", url, "--token",
               tokens["agent"], "--name", "dummy-host", "--data-dir", str(data / "agent")]  # fmt: skip
        with alog.open("wb") as fh:
            agent = subprocess.Popen(cmd, cwd=REPO, env=_env({**AGENT_ENV, **extra}), stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
        yield {"url": url, "user": tokens["user"], "agent_log": alog}
    finally:
        if agent is not None:
            _stop(agent)
        _stop(server)


def test_a_declared_dummy_runtime_is_benchmarked_end_to_end(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    from bench import models
    from latencylab import Client

    onnx = models.save(models.mlp(), tmp_path / "mlp.onnx")
    with Client(server=fleet["url"], token=fleet["user"]) as c:
        deadline = time.monotonic() + 60
        while not any(d.name == "dummy-host" and d.status == "online" for d in c.devices()):
            assert time.monotonic() < deadline, fleet["agent_log"].read_text()[-3000:]
            time.sleep(0.2)
        (device,) = c.devices()
        assert "numpydummy" in device.runtimes  # detected by the agent from its declaration
        m = c.upload_model(onnx)
        target = {"runtime": "numpydummy", "device": "dummy-host", "options": {"size": 48}}
        # over HTTP: this test process's own schemas do not declare the dummy (the SDK would
        # refuse it before sending; a user of the plug-in sets LATENCYLAB_EXTRA_RUNTIMES too)
        made = c.http.post("/benchmarks", json={"model_id": m.id, "targets": [target], "settings": FAST})  # fmt: skip
        assert made.status_code == 202, made.text
        done = c.wait(made.json()["id"], timeout=180)
        assert done.status == "succeeded", done.jobs
        (res,) = done.results
        assert res.runtime == "numpydummy" and res.environment["matrix_size"] == 48
        assert len(c.raw_times(done.id, res.id).times_ms) == res.runs >= FAST["min_runs"]
        assert [p.name for p in c.profile(done.id, res.id).layers] == ["dot"]
    with httpx.Client(base_url=f"{fleet['url']}/api/v1", headers={"Authorization": f"Bearer {fleet['user']}"}) as h:  # fmt: skip
        bad = h.post("/benchmarks/check", json={"targets": [{"runtime": "numpydummy", "options": {"sise": 1}}]})  # fmt: skip
        pte_only = h.post("/benchmarks/check", json={"model_format": "tflite", "targets": [{"runtime": "numpydummy", "device": "dummy-host"}]})  # fmt: skip
    assert bad.status_code == 422 and "sise" in bad.text and "size" in bad.text  # its options model
    assert pte_only.status_code == 422 and "cannot run a tflite model" in pte_only.text
