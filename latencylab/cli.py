"""The ``latencylab`` command: serve, agent, submit, results, devices, models, token."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from latencylab.cli_tables import table_app
from latencylab.client import Client, LatencyLabError
from latencylab.schemas import BenchmarkPublic, ResultPublic

app = typer.Typer(help="LatencyLab: hardware-aware latency benchmarking.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(table_app, name="table")
console = Console()
err = Console(stderr=True)

ServerOpt = Annotated[str | None, typer.Option(help="Coordinator URL [env LATENCYLAB_SERVER]")]
TokenOpt = Annotated[str | None, typer.Option(help="API token [env LATENCYLAB_TOKEN]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def _client(server: str | None, token: str | None) -> Client:
    return Client(server=server, token=token)


def _fail(exc: Exception) -> None:
    if isinstance(exc, httpx.TransportError):
        url = exc.request.url if exc.request else "the coordinator"
        exc = ConnectionError(f"cannot reach {url} ({exc}); is the coordinator running (make run)?")
    err.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def results_table(bench: BenchmarkPublic) -> Table:
    t = Table(title=f"benchmark {bench.id} ({bench.status})")
    for col in (
        "result",
        "runtime",
        "device",
        "prec",
        "batch",
        "thr",
        "status",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "mean ms",
        "CoV",
        "runs",
        "load ms",
        "peak RSS MB",
    ):
        t.add_column(col, justify="right" if col.endswith(("ms", "MB", "runs", "CoV")) else "left")
    rows: list[ResultPublic] = bench.results
    for r in rows:
        lat = r.latency_ms
        t.add_row(
            str(r.id),
            r.runtime,
            r.device,
            r.precision,
            str(r.batch_size),
            str(r.threads),
            r.status if r.status == "succeeded" else f"[red]{r.status}[/red]",
            _fmt(lat.p50 if lat else None),
            _fmt(lat.p90 if lat else None),
            _fmt(lat.p99 if lat else None),
            _fmt(lat.mean if lat else None),
            _fmt(lat.cov if lat else None, 4),
            str(r.runs),
            _fmt(r.load_ms, 1),
            _fmt(r.memory.get("peak_rss_mb"), 1),
        )
    return t


def _print_errors(bench: BenchmarkPublic) -> None:
    for j in bench.jobs:
        if j.status == "failed" and j.error:
            err.print(f"[red]job {j.id} ({j.runtime} on {j.device}) failed:[/red] {j.error}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="LATENCYLAB_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="LATENCYLAB_PORT")] = 8000,
    data_dir: Annotated[Path, typer.Option(envvar="LATENCYLAB_DATA_DIR")] = Path(".latencylab"),
    local_agent: Annotated[
        bool, typer.Option(help="Also start a local agent and a converter worker")
    ] = True,
) -> None:
    """Start the coordinator (and, by default, a local agent for this machine)."""
    from server.serve import serve as run_server

    run_server(host=host, port=port, data_dir=data_dir, local_agent=local_agent)


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
    from agents.agent import main
    from agents.config import AgentSettings

    attributes = {}
    for a in attr or []:
        key, sep, value = a.partition("=")
        if not sep:
            _fail(ValueError(f"--attr wants key=value, got {a!r}"))
        attributes[key] = value
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
    main(AgentSettings(**{k: v for k, v in overrides.items() if v is not None}))


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

    from agents.config import AgentSettings
    from agents.converter import main

    settings = AgentSettings(
        server=server,
        token=token,
        token_file=token_file,
        name=name or f"{socket.gethostname()}-converter",
        device_class="converter",
        cache_dir=data_dir / "agent-cache",
        work_dir=data_dir / "converter-work",
        convert_timeout_s=timeout_s,
        convert_memory_mb=memory_mb,
    )
    main(settings)


@app.command()
def submit(
    model: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="Model: .onnx, .pt2, .tflite, .zip")
    ],
    runtime: Annotated[
        list[str] | None, typer.Option(help="Runtime, repeat for several [default: onnxruntime]")
    ] = None,
    device: Annotated[
        list[str] | None, typer.Option(help="Device selector, repeat for several [default: local]")
    ] = None,
    precision: str = "fp32",
    batch_size: int = 1,
    threads: int = 1,
    name: Annotated[str | None, typer.Option(help="Model name")] = None,
    metadata: Annotated[str | None, typer.Option(help="Metadata JSON")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(help="Target option key=value, e.g. delegate=gpu (repeat)"),
    ] = None,
    warmup_runs: int = 10,
    min_runs: int = 50,
    min_duration_s: float = 1.0,
    max_duration_s: float = 30.0,
    target_rel_ci: float = 0.01,
    wait: Annotated[bool, typer.Option(help="Wait for the results")] = True,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a model, benchmark it on every runtime x device given, show the results."""
    from latencylab.progress import watch

    runtime = runtime or ["onnxruntime"]
    device = device or ["local"]
    options: dict[str, str] = {}
    for o in option or []:
        key, sep, value = o.partition("=")
        if not sep:
            _fail(ValueError(f"--option wants key=value, got {o!r}"))
        options[key] = value

    try:
        meta = json.loads(metadata) if metadata else None
    except json.JSONDecodeError as exc:
        _fail(ValueError(f"--metadata is not valid JSON: {exc}"))
    try:
        with _client(server, token) as c:
            m = c.upload_model(model, name=name, metadata=meta)
            if not as_json:
                err.print(
                    f"uploaded model {m.id} ({m.name}, {m.size} bytes, sha256 {m.sha256[:12]})"
                )
            targets = [
                {
                    "runtime": r,
                    "device": d,
                    "precision": precision,
                    "batch_size": batch_size,
                    "threads": threads,
                    "options": options,
                }
                for r in runtime
                for d in device
            ]
            settings = {
                "warmup_runs": warmup_runs,
                "min_runs": min_runs,
                "min_duration_s": min_duration_s,
                "max_duration_s": max_duration_s,
                "target_rel_ci": target_rel_ci,
            }
            bench = c.benchmark(m.id, targets, settings)
            if wait:
                bench = watch(c, bench.id, quiet=as_json)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(
            json.dumps(
                {"model": m.model_dump(mode="json"), "benchmark": bench.model_dump(mode="json")}
            )
        )
        return
    console.print(results_table(bench))
    _print_errors(bench)
    if bench.status == "failed":
        raise typer.Exit(2)


@app.command()
def results(
    benchmark_id: int, server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a benchmark's results."""
    try:
        with _client(server, token) as c:
            bench = c.get_benchmark(benchmark_id)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(bench.model_dump_json())
        return
    console.print(results_table(bench))
    _print_errors(bench)


@app.command()
def devices(server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List the fleet: devices, their runtimes and whether they are online."""
    try:
        with _client(server, token) as c:
            devs = c.devices()
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([d.model_dump(mode="json", by_alias=True) for d in devs]))
        return
    t = Table(title="devices")
    for col in ("id", "name", "class", "status", "runtimes", "current job", "queued", "last seen"):
        t.add_column(col)
    for d in devs:
        t.add_row(
            str(d.id),
            d.name,
            d.device_class,
            d.status if d.status == "online" else f"[yellow]{d.status}[/yellow]",
            ", ".join(f"{k} {v}" for k, v in sorted(d.runtimes.items())),
            str(d.current_job or "-"),
            str(d.queue_depth),
            d.last_seen.isoformat(timespec="seconds"),
        )
    console.print(t)


@app.command()
def models(server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List uploaded models."""
    try:
        with _client(server, token) as c:
            ms = c.models()
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([m.model_dump(mode="json") for m in ms]))
        return
    t = Table(title="models")
    for col in ("id", "name", "format", "size", "inputs", "sha256"):
        t.add_column(col)
    for m in ms:
        t.add_row(
            str(m.id),
            m.name,
            m.format,
            str(m.size),
            "; ".join(f"{i.name}{i.shape}" for i in m.inputs),
            m.sha256[:12],
        )
    console.print(t)


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="admin | user | agent")] = "user",
    name: str = "",
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token (needs the admin token; default: ./.latencylab/admin.token)."""
    if scope not in ("admin", "user", "agent"):
        _fail(ValueError(f"unknown scope {scope!r}: use admin, user or agent"))
    try:
        with _client(server, token) as c:
            t = c.create_token(scope, name)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(t.model_dump_json())
    else:
        print(t.token)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
