"""``latencylab table``: build latency tables of NAS spaces, watch them, show and export them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from latencylab.client import Client, LatencyLabError
from latencylab.tables import TablePublic

table_app = typer.Typer(help="Latency tables of NAS search spaces.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ServerOpt = Annotated[str | None, typer.Option(help="Coordinator URL [env LATENCYLAB_SERVER]")]
TokenOpt = Annotated[str | None, typer.Option(help="API token [env LATENCYLAB_TOKEN]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def _fail(exc: Exception) -> None:
    if isinstance(exc, httpx.TransportError):
        exc = ConnectionError(f"cannot reach the coordinator ({exc}); is it running (make run)?")
    err.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


def _phase(t: TablePublic) -> str:
    p = t.progress
    if t.status == "building":
        return f"table {t.id} blocks {p.blocks_done}/{p.blocks_total} ({p.blocks_reused} reused)"
    if t.status == "validating":
        return f"table {t.id} validating {p.networks_done}/{p.networks_total} networks"
    return f"table {t.id} {t.status}"


def quality_table(t: TablePublic) -> Table:
    out = Table(title=f"table {t.id}: {t.space} @ {t.resolution} on {t.device} ({t.status})")
    for col in ("predictor", "n", "acc5 %", "acc10 %", "RMSPE %", "Spearman", "bias %"):
        out.add_column(col, justify="left" if col == "predictor" else "right")
    q = t.quality
    if q is None:
        return out
    rows = [("lut_sum", q.lut_sum), ("linear (CV)", q.calibrated)]
    for name, s in rows:
        if s is None:
            continue
        best = " *" if name.split()[0] == q.predictor else ""
        out.add_row(
            name + best,
            str(s.n),
            f"{100 * s.acc5:.1f}",
            f"{100 * s.acc10:.1f}",
            f"{100 * s.rmspe:.2f}",
            "-" if s.spearman is None else f"{s.spearman:.4f}",
            f"{100 * s.bias:+.2f}",
        )
    return out


def _show(t: TablePublic) -> None:
    console.print(quality_table(t))
    if t.calibration:
        cal = t.calibration
        console.print(f"calibration: latency = {cal['a']:.4f} * lut_sum {cal['b']:+.4f} ms")
    if t.build_seconds is not None:
        console.print(f"block phase: {t.build_seconds:.1f} s for {t.progress.blocks_total} blocks")
    if t.error:
        err.print(f"[yellow]{t.error}[/yellow]")
    for fb in t.failed_blocks[:10]:
        err.print(f"[red]failed block[/red] {fb.key}: {fb.error}")


def watch_table(c: Client, table_id: int, quiet: bool = False) -> TablePublic:
    """Poll the table with a progress bar (blocks, then validation networks) until done."""
    if quiet:
        return c.wait_table(table_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("table", total=None)

        def update(t: TablePublic) -> None:
            bar.update(
                task, completed=t.progress.done, total=t.progress.total, description=_phase(t)
            )

        return c.wait_table(table_id, on_update=update)


@table_app.command("build")
def build(
    space: Annotated[str, typer.Option(help="ofa-proxyless | ofa-mbv3 | fbnet")],
    resolution: Annotated[int | None, typer.Option(help="Default: the space's")] = None,
    device: str = "local",
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch_size: int = 1,
    precision: str = "fp32",
    validate_n: Annotated[int, typer.Option(help="Random archs measured whole")] = 100,
    seed: int = 0,
    statistic: Annotated[str, typer.Option(help="min | p50 | mean")] = "min",
    fresh: Annotated[bool, typer.Option(help="New table even if an identical one exists")] = False,
    wait: Annotated[bool, typer.Option(help="Wait, with a progress bar")] = True,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build (or resume / reuse) a latency table, then validate it on random archs."""
    try:
        with Client(server=server, token=token) as c:
            t = c.create_table(
                space,
                device=device,
                runtime=runtime,
                resolution=resolution,
                batch_size=batch_size,
                threads=threads,
                precision=precision,
                validate_n=validate_n,
                seed=seed,
                statistic=statistic,
                fresh=fresh,
            )
            if not as_json and t.reused:
                err.print(f"table {t.id}: the identical table ({t.status}); --fresh for a new one")
            elif not as_json:
                err.print(
                    f"table {t.id}: {t.progress.blocks_total} unique blocks of {t.space} at "
                    f"{t.resolution} on {t.device} ({t.progress.blocks_reused} already measured)"
                )
            if wait:
                t = watch_table(c, t.id, quiet=as_json)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(t.model_dump_json())
        return
    _show(t)
    if t.status == "failed":
        raise typer.Exit(2)


@table_app.command("show")
def show(
    table_id: int,
    format: Annotated[str | None, typer.Option(help="json | csv | ofa-yaml: the entries")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file")] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a table's status and quality, or export it (--format)."""
    try:
        with Client(server=server, token=token) as c:
            if format:
                text = c.export_table(table_id, format)
                if output:
                    output.write_text(text)
                    err.print(f"wrote {output}")
                else:
                    print(text, end="")
                return
            t = c.table(table_id)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(t.model_dump_json())
        return
    err.print(_phase(t))
    _show(t)


@table_app.command("list")
def list_(server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List latency tables."""
    try:
        with Client(server=server, token=token) as c:
            tables = c.tables()
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([t.model_dump(mode="json") for t in tables]))
        return
    out = Table(title="latency tables")
    for col in ("id", "space", "res", "device", "runtime", "thr", "status", "done", "acc10 %"):
        out.add_column(col)
    for t in tables:
        q = t.quality
        out.add_row(
            str(t.id),
            t.space,
            str(t.resolution),
            t.device,
            t.runtime,
            str(t.threads),
            t.status,
            f"{t.progress.done}/{t.progress.total}",
            "-" if q is None else f"{100 * q.acc10:.1f} ({q.predictor})",
        )
    console.print(out)


@table_app.command("resume")
def resume(table_id: int, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Retry a table's failed blocks and watch it finish."""
    try:
        with Client(server=server, token=token) as c:
            c.resume_table(table_id)
            t = watch_table(c, table_id)
    except (LatencyLabError, httpx.TransportError) as exc:
        _fail(exc)
    _show(t)
