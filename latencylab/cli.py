"""The ``latencylab`` command: serve, agent, converter, submit, results, devices, models,
table, token.

Errors a user can cause end in one readable message and an exit code (``latencylab.cli_common``:
1 error, 2 invalid input and nothing done, 3 the work ran and failed), never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from latencylab.cli_common import (
    ENV_HELP,
    JsonOpt,
    ServerOpt,
    TokenOpt,
    WideOpt,
    connect,
    console,
    err,
    fail,
    parse_pairs,
)
from latencylab.cli_layout import Col, print_table
from latencylab.cli_models import models_app
from latencylab.cli_predictors import predictor_app
from latencylab.cli_results import print_problems, print_results
from latencylab.cli_submit import SUBMIT_HELP, submit
from latencylab.cli_tables import table_app
from latencylab.client import Client, LatencyLabError
from latencylab.schemas import TokenPublic

app = typer.Typer(
    help=f"LatencyLab: hardware-aware latency benchmarking.\n\n{ENV_HELP}",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(table_app, name="table")
app.add_typer(models_app, name="models")
app.add_typer(predictor_app, name="predictor")
app.command("submit", help=SUBMIT_HELP)(submit)


def _client(server: str | None, token: str | None) -> Client:
    return Client(server=server, token=token)


def _fail(exc: Exception) -> NoReturn:
    fail(exc)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="LATENCYLAB_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LATENCYLAB_PORT")] = 8000,
    data_dir: Annotated[Path, typer.Option(envvar="LATENCYLAB_DATA_DIR")] = Path(".latencylab"),
    local_agent: Annotated[
        bool, typer.Option(help="Also start a local agent and a converter worker")
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, envvar="LATENCYLAB_WORKERS", help="Coordinator processes (PostgreSQL only)"
        ),
    ] = None,
) -> None:
    """Start the coordinator (and, by default, a local agent for this machine)."""
    args = ["--host", host, "--port", str(port), "--data-dir", str(data_dir)]
    args += [] if local_agent else ["--no-local-agent"]
    args += ["--workers", str(workers)] if workers is not None else []
    _run_module("server.serve", args)


@app.command()
def agent(
    server: Annotated[str, typer.Option(help="Coordinator URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(help="Token with scope agent")] = None,
    token_file: Annotated[Path | None, typer.Option(help="Read the token from a file")] = None,
    name: Annotated[str | None, typer.Option(help="Device name; default HOSTNAME-cpu")] = None,
    device_class: Annotated[str, typer.Option("--class", help="cpu|gpu|jetson|phone|mac")] = "cpu",
    attr: Annotated[
        list[str] | None, typer.Option(help="Extra attribute key=value (repeat)")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Cache and scratch space")] = Path(".latencylab"),
    once: Annotated[bool, typer.Option(help="Exit after one job")] = False,
) -> None:
    """Run a device agent: register, lease jobs one at a time, measure, report."""
    attributes = parse_pairs(attr, "--attr")
    overrides: dict[str, Any] = {
        "server": server,
        "token": token,
        "token_file": token_file,
        "device_class": device_class,
        "attributes": attributes,
        "once": once,
        "cache_dir": data_dir / "agent-cache",
        "work_dir": data_dir / "agent-work",
    }
    if name:
        overrides["name"] = name
    _run_agents("agent", {k: v for k, v in overrides.items() if v is not None})


@app.command()
def converter(
    server: Annotated[str, typer.Option(help="Coordinator URL")] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(help="Token with scope agent")] = None,
    token_file: Annotated[Path | None, typer.Option(help="Read the token from a file")] = None,
    name: Annotated[
        str | None, typer.Option(help="Worker name; default HOSTNAME-converter")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Cache and scratch space")] = Path(".latencylab"),
    timeout_s: Annotated[float, typer.Option(help="Kill one conversion after this long")] = 900,
    memory_mb: Annotated[
        int, typer.Option(help="Memory (address space) limit per conversion")
    ] = 8192,
) -> None:
    """Run a converter worker: lease conversion jobs, convert, validate, upload."""
    import socket

    settings = {
        "server": server,
        "token": token,
        "token_file": token_file,
        "name": name or f"{socket.gethostname()}-converter",
        "device_class": "converter",
        "cache_dir": data_dir / "agent-cache",
        "work_dir": data_dir / "converter-work",
        "convert_timeout_s": timeout_s,
        "convert_memory_mb": memory_mb,
    }
    _run_agents("converter", {k: v for k, v in settings.items() if v is not None})


def _run_module(module: str, args: list[str]) -> NoReturn:
    """``python -m MODULE ARGS`` in this process's place (same pid, signals and exit status):
    the SDK starts the coordinator and the agents without importing them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


def _run_agents(role: str, settings: dict[str, Any]) -> NoReturn:
    _run_module("agents", [role, "--settings", json.dumps(settings, default=str)])


@app.command()
def results(
    benchmark_id: int,
    wide: WideOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a benchmark's results (fewer columns on a narrow terminal; --wide for all)."""
    with connect(server, token) as c:
        bench = c.get_benchmark(benchmark_id)
    if as_json:
        print(bench.model_dump_json())
        return
    print_results(console, bench, wide)
    print_problems(err, bench)


DEVICE_COLUMNS = (
    Col("id", rank=3, numeric=True),
    Col("name"),
    Col("class", rank=1),
    Col("status"),
    Col("runtimes", rank=2),
    Col("current job", rank=4, numeric=True),
    Col("queued", rank=4, numeric=True),
    Col("last seen", rank=5),
)


@app.command()
def devices(
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List the fleet: devices, their runtimes and whether they are online."""
    with connect(server, token) as c:
        devs = c.devices()
    if as_json:
        print(json.dumps([d.model_dump(mode="json", by_alias=True) for d in devs]))
        return
    rows = [
        [
            str(d.id),
            escape(d.name),
            escape(d.device_class),
            d.status if d.status == "online" else f"[yellow]{d.status}[/yellow]",
            escape("\n".join(f"{k} {v}" for k, v in sorted(d.runtimes.items()))),
            str(d.current_job or "-"),
            str(d.queue_depth),
            d.last_seen.isoformat(timespec="seconds"),
        ]
        for d in devs
    ]
    print_table(console, "devices", DEVICE_COLUMNS, rows, wide)


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="admin | user | agent")] = "user",
    name: str = "",
    device: Annotated[
        list[str] | None,
        typer.Option(
            help="Agent tokens: a device name or glob (pixel-*) it may register; repeatable"
        ),
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token (needs the admin token; default: ./.latencylab/admin.token)."""
    if scope not in ("admin", "user", "agent"):
        _fail(ValueError(f"unknown scope {scope!r}: use admin, user or agent"))
    try:
        with _client(server, token) as c:
            t = c.create_token(scope, name, device or None)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(t.model_dump_json())
    else:
        print(t.token)


def _token_row(t: TokenPublic) -> list[str]:
    return [
        str(t.id),
        t.name,
        t.scope,
        t.prefix,
        ", ".join(t.devices) if t.devices is not None else "any",
        ", ".join(t.registered_devices) or "-",
        t.created_at.isoformat(timespec="seconds"),
        f"[red]{t.revoked_at.isoformat(timespec='seconds')}[/red]" if t.revoked_at else "-",
    ]


@token_app.command("list")
def token_list(server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List tokens (admin): scope, device scope, registered devices, revocation (no secrets)."""
    try:
        with _client(server, token) as c:
            tokens = c.list_tokens()
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([t.model_dump(mode="json") for t in tokens]))
        return
    t = Table(title="tokens")
    for col in ("id", "name", "scope", "prefix", "may register", "devices", "created", "revoked"):
        t.add_column(col)
    for row in tokens:
        t.add_row(*_token_row(row))
    console.print(t)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see 'latencylab token list')")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token at once (admin); the devices registered with it are released."""
    try:
        with _client(server, token) as c:
            t = c.revoke_token(token_id)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(t.model_dump_json())
    else:
        print(f"token {t.id} ('{t.name}', {t.scope}) revoked")


@token_app.command("unbind")
def token_unbind(
    device_id: Annotated[int, typer.Argument(help="The device's id (see 'latencylab devices')")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Free a device from the token that registered it (admin), so another token may."""
    try:
        with _client(server, token) as c:
            d = c.release_device(device_id)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(d.model_dump_json(by_alias=True))
    else:
        print(f"device {d.id} ('{d.name}') released: any token allowed the name may register it")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
