"""The ``latencylab`` CLI as a new user meets it at 80 columns: a real subprocess against the
real coordinator (SQLite and PostgreSQL), every run with ``COLUMNS=80``.

Typos are refused before anything is uploaded (the coordinator's dry run), a file uploaded
before is reused, errors are one readable message and an exit code (never a traceback), a bad
token is named with its source, the results table never cuts a number, and ``models
edit/delete`` work end to end (``table predict`` is tested in tests/test_tables.py, on the
table built there).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from onnx import TensorProto, helper
from rich.console import Console

from latencylab.cli_layout import Col, render
from tests.conftest import QUICK_CLI, Live, _env, cli, free_port

RUNTIMES = ("onnxruntime", "tflite", "coreml", "tensorrt", "openvino", "pytorch")


def run(
    live: Live | None, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """The CLI at 80 columns, with the user token unless ``env`` says otherwise."""
    base = {"COLUMNS": "80"}
    if live is not None:
        base |= {"LATENCYLAB_SERVER": live.url, "LATENCYLAB_TOKEN": live.user_token}
    res = cli(*args, env=_env({**base, **env}), timeout=timeout)
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res


def unique_model(tmp_path: Path) -> Path:
    """A tiny ONNX model whose bytes (and sha256) no other test uploads."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.doc_string = uuid.uuid4().hex
    path = tmp_path / f"relu-{model.doc_string[:8]}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def copies(live: Live, path: Path) -> int:
    with live.client() as c:
        return len(c.models(sha256=sha256(path)))


# --------------------------------------------------------------------------- refused before upload
def test_runtime_typo_is_refused_before_anything_is_uploaded(live: Live, tmp_path: Path) -> None:
    path = unique_model(tmp_path)
    with live.client() as c:
        before = len(c.models())
    res = run(live, "submit", str(path), "--runtime", "onnxrt", "--device", "local", *QUICK_CLI)
    assert res.returncode == 2, res.stderr
    assert "--runtime 'onnxrt'" in res.stderr
    assert all(f"'{rt}'" in res.stderr for rt in RUNTIMES), res.stderr
    bad_precision = run(live, "submit", str(path), "--precision", "fp64")
    assert bad_precision.returncode == 2
    assert "--precision 'fp64'" in bad_precision.stderr
    assert all(f"'{p}'" in bad_precision.stderr for p in ("fp32", "fp16", "int8"))
    bad_option = run(live, "submit", str(path), "--option", "delegat=gpu", "--runtime", "tflite")
    assert bad_option.returncode == 2 and "unknown option" in bad_option.stderr
    assert "delegate" in bad_option.stderr, bad_option.stderr  # the allowed keys are listed
    bad_setting = run(live, "submit", str(path), "--min-runs", "0")
    assert bad_setting.returncode == 2 and "--min-runs" in bad_setting.stderr
    with live.client() as c:
        assert len(c.models()) == before
    assert copies(live, path) == 0


def test_unknown_device_or_runtime_not_offered_is_refused_before_upload(
    live: Live, tmp_path: Path
) -> None:
    path = unique_model(tmp_path)
    res = run(live, "submit", str(path), "--device", "no-such-box")
    assert res.returncode == 2
    assert "no registered device matches 'no-such-box'" in res.stderr
    assert live.agent_name in res.stderr  # the registered devices are listed
    both = run(live, "submit", str(path), "--runtime", "onnxruntime", "--runtime", "coreml",
               "--device", "local", "--device", "class:no-such-class")  # fmt: skip
    assert both.returncode == 2
    lines = both.stderr.splitlines()
    # onnxruntime@local is fine; the three others are each named with what is wrong
    assert sum("--runtime 'coreml' --device 'local'" in ln for ln in lines) == 1
    assert sum("--device 'class:no-such-class'" in ln for ln in lines) == 2
    assert "do not offer runtime 'coreml'" in both.stderr
    assert copies(live, path) == 0


def test_dry_run_gives_the_message_of_post_benchmarks(
    live: Live, model_files: dict[str, Path]
) -> None:
    with live.client() as c:
        m = c.upload_model(model_files["mlp"])
    bad = [{"runtime": "onnxruntime", "device": "nope"}, {"runtime": "coreml", "device": "local"}]
    with live.http(live.user_token) as h:
        real = h.post("/benchmarks", json={"model_id": m.id, "targets": bad})
        dry = h.post("/benchmarks/check", json={"model_id": m.id, "targets": bad})
        fmt = h.post("/benchmarks/check", json={"model_format": "onnx", "targets": bad})
        ok = h.post("/benchmarks/check", json={"targets": [{"runtime": "onnxruntime"}]})
        tfl = h.post(
            "/benchmarks/check",
            json={"model_format": "tflite", "targets": [{"runtime": "onnxruntime"}]},
        )
        conv = h.post(
            "/benchmarks/check",
            json={"model_format": "onnx", "targets": [{"runtime": "openvino"}]},
        )
        missing = h.post("/benchmarks/check", json={"model_id": 10**8, "targets": bad})
        typo = h.post("/benchmarks/check", json={"targets": [{"runtime": "onnxrt"}]})
        shas = h.get("/models", params={"sha256": m.sha256}).json()
        bad_sha = h.get("/models", params={"sha256": "xyz"})
    assert real.status_code == dry.status_code == fmt.status_code == 422
    assert real.json()["detail"] == dry.json()["detail"] == fmt.json()["detail"]
    assert "no registered device matches 'nope'" in dry.json()["detail"]
    errors = dry.json()["errors"]
    assert [e["loc"] for e in errors] == [["targets", 0], ["targets", 1]]
    assert "do not offer runtime 'coreml'" in errors[1]["msg"]
    assert ok.status_code == 200, ok.text
    assert live.agent_name in ok.json()["targets"][0]["candidates"]
    assert ok.json()["targets"][0]["convert_to"] is None
    assert tfl.status_code == 422 and "cannot run a tflite model" in tfl.json()["detail"]
    assert conv.status_code == 200 and conv.json()["targets"][0]["convert_to"] == "openvino"
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert typo.status_code == 422 and typo.json()["code"] == "validation_error"
    assert typo.json()["errors"][0]["loc"] == ["body", "targets", 0, "runtime"]
    assert m.id in [x["id"] for x in shas] and {x["sha256"] for x in shas} == {m.sha256}
    assert bad_sha.status_code == 422


# --------------------------------------------------------------------------- reuse + the table
def test_second_submit_reuses_the_model_and_the_table_reads_at_80_columns(
    live: Live, tmp_path: Path
) -> None:
    path = unique_model(tmp_path)
    first = run(live, "submit", str(path), *QUICK_CLI, "--json")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["benchmark"]["status"] == "succeeded"
    second = run(live, "submit", str(path), *QUICK_CLI)
    assert second.returncode == 0, second.stderr
    assert f"reusing model {body['model']['id']}" in second.stderr
    assert copies(live, path) == 1
    renamed = run(live, "submit", str(path), "--name", "renamed", "--no-wait", "--json")
    assert renamed.returncode == 0, renamed.stderr
    assert json.loads(renamed.stdout)["model"]["id"] != body["model"]["id"]  # another name
    assert copies(live, path) == 2

    bench = body["benchmark"]
    lat = bench["results"][0]["latency_ms"]
    table = run(live, "results", str(bench["id"]))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), table.stdout
    assert "…" not in table.stdout, table.stdout
    for key in ("p50", "p90", "p99"):  # whole numbers, as the JSON has them
        assert f"{lat[key]:.3f}" in table.stdout, (key, table.stdout)
    assert "onnxruntime" in table.stdout and live.agent_name in table.stdout
    assert "fp32" in table.stdout  # constant columns move into the title
    wide = run(live, "results", str(bench["id"]), "--wide")
    assert wide.returncode == 0
    assert all(h in wide.stdout for h in ("result", "CoV", "runs", "load ms", "peak RSS MB"))
    assert f"{lat['mean']:.3f}" in wide.stdout and f"{lat['cov']:.4f}" in wide.stdout
    assert "…" not in wide.stdout


def test_layout_drops_columns_by_rank_then_stacks_and_never_cuts_a_number() -> None:
    cols = [Col("name"), Col("p50 ms", numeric=True), Col("extra", rank=2), Col("more", rank=1)]
    rows = [["a-rather-long-device-name", "18.012", "x" * 20, "y" * 10]]
    assert render("t", cols, rows, 200).table is not None
    narrow = render("t", cols, rows, 50)
    assert narrow.table is not None and [c.header for c in narrow.table.columns] == [
        "name", "p50 ms", "more"
    ]  # fmt: skip
    stacked = render("t", cols, rows, 30)
    assert stacked.table is None
    text = "\n".join(b.plain for b in stacked.blocks)
    assert "18.012" in text and "extra " + "x" * 20 in text
    console = Console(width=30, record=True)
    for block in stacked.blocks:
        console.print(block)
    assert all(len(line) <= 30 for line in console.export_text().splitlines())


# --------------------------------------------------------------------------- tokens + errors
def test_bad_token_names_its_source_and_prefix(live: Live, tmp_path: Path) -> None:
    bogus = "llu_Bogus1234567890abcdefghijklmnopqrstuvwxyz"
    env_tok = run(live, "devices", LATENCYLAB_TOKEN=bogus)
    assert env_tok.returncode == 1
    assert "token llu_Bogu… from LATENCYLAB_TOKEN" in env_tok.stderr, env_tok.stderr
    assert bogus not in env_tok.stderr  # only the prefix
    assert "latencylab token create" in env_tok.stderr
    assert f"LATENCYLAB_SERVER (now {live.url})" in env_tok.stderr

    flag = run(live, "results", "1", "--token", "lla_AbC1xyz-not-a-token")
    assert flag.returncode == 1 and "token lla_AbC1… from --token" in flag.stderr

    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.token").write_text("lla_FileToken-not-issued\n")
    from_file = run(live, "models", LATENCYLAB_TOKEN="", LATENCYLAB_DATA_DIR=str(data))
    assert from_file.returncode == 1
    assert f"token lla_File… from the file {(data / 'admin.token').resolve()}" in from_file.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    none = run(live, "devices", LATENCYLAB_TOKEN="", LATENCYLAB_DATA_DIR=str(empty))
    assert none.returncode == 1 and "(401 token_missing)" in none.stderr
    assert (
        f"{(empty / 'admin.token').resolve()} is absent" in none.stderr
        and "make run" in none.stderr
    )

    with live.http(live.admin_token) as h:
        made = h.post("/tokens", json={"scope": "user", "name": "cli-revoked"}).json()
        assert h.post(f"/tokens/{made['id']}/revoke").status_code == 200
    revoked = run(live, "devices", LATENCYLAB_TOKEN=made["token"])
    assert revoked.returncode == 1 and "(401 token_revoked)" in revoked.stderr
    assert f"token {made['token'][:8]}… from LATENCYLAB_TOKEN" in revoked.stderr
    assert "ask an admin for a new token" in revoked.stderr


def test_unreachable_coordinator_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    res = run(None, "devices", LATENCYLAB_SERVER=url, LATENCYLAB_TOKEN="llu_x")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: cannot reach the coordinator at {url}: is `make run` running? "
        "(set LATENCYLAB_SERVER)"
    )
    missing = run(None, "submit", str(unique_model(tmp_path)), LATENCYLAB_SERVER=url)
    assert missing.returncode == 1 and "cannot reach the coordinator" in missing.stderr


def test_help_lists_runtimes_precisions_selectors_options_and_env() -> None:
    top = run(None, "--help")
    assert top.returncode == 0
    assert "LATENCYLAB_SERVER" in top.stdout and "LATENCYLAB_TOKEN" in top.stdout
    res = run(None, "submit", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert all(rt in text for rt in RUNTIMES)
    assert "fp32, fp16, int8" in text
    assert "key:value[,key:value]" in text and "class:gpu" in text and "'local'" in text
    assert "--option key=value" in text and "delegate" in text and "compute_units" in text
    assert "LATENCYLAB_SERVER" in text and "http://127.0.0.1:8000" in text
    assert "LATENCYLAB_TOKEN" in text and "./.latencylab/admin.token" in text
    assert all(len(line) <= 80 for line in res.stdout.splitlines())


# --------------------------------------------------------------------------- models edit / delete
def test_models_edit_and_delete(live: Live, tmp_path: Path) -> None:
    with live.client() as c:
        m = c.upload_model(unique_model(tmp_path), metadata={"tags": ["old"]})
    edited = run(live, "models", "edit", str(m.id), "--name", "mbv3-small",
                 "--accuracy", "top1=67.4", "--tag", "mbv3", "--tag", "small", "--json")  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    body = json.loads(edited.stdout)
    assert body["name"] == "mbv3-small"
    assert body["metadata"]["accuracy"] == {"top1": 67.4}
    assert body["metadata"]["tags"] == ["mbv3", "small"]
    shown = run(live, "models")
    assert shown.returncode == 0 and "mbv3-small" in shown.stdout
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())

    nothing = run(live, "models", "edit", str(m.id))
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    nan = run(live, "models", "edit", str(m.id), "--accuracy", "top1=high")
    assert nan.returncode == 2 and "must be a number" in nan.stderr
    unasked = run(live, "models", "delete", str(m.id))  # no terminal to confirm on
    assert unasked.returncode == 2 and "without --yes" in unasked.stderr
    bad_choice = run(live, "models", "delete", str(m.id), "--results", "maybe", "--yes")
    assert bad_choice.returncode == 2
    with live.client() as c:
        assert c.model(m.id).name == "mbv3-small"

    gone = run(live, "models", "delete", str(m.id), "--results", "delete", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert f"model {m.id} (mbv3-small) deleted" in gone.stderr
    again = run(live, "models", "delete", str(m.id), "--yes")
    assert again.returncode == 1 and f"model {m.id} does not exist" in again.stderr
    assert "(404 not_found)" in again.stderr
