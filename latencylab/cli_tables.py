"""``latencylab table``: build latency tables of NAS spaces, watch them, show, export and
predict with them."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from latencylab.cli_common import (
    EXIT_FAILED,
    JsonOpt,
    ServerOpt,
    TokenOpt,
    WideOpt,
    connect,
    console,
    err,
    flag_label,
    stop,
)
from latencylab.cli_layout import Col, print_table
from latencylab.client import Client
from latencylab.spaces import get_space
from latencylab.tables import TablePublic

table_app = typer.Typer(help="Latency tables of NAS search spaces.", no_args_is_help=True)


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
    device: Annotated[
        str, typer.Option(help="local, a device name or key:value[,key:value] (class:gpu)")
    ] = "local",
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch_size: int = 1,
    precision: str = "fp32",
    validate_n: Annotated[int, typer.Option(help="Random archs measured whole")] = 100,
    validate_exported: Annotated[
        int,
        typer.Option(
            help="Of those, how many also measured as exported from a reference-style PyTorch "
            "module, as is and normalised (ofa-proxyless, ofa-mbv3)"
        ),
    ] = 0,
    seed: int = 0,
    statistic: Annotated[str, typer.Option(help="min | p50 | mean")] = "min",
    fresh: Annotated[bool, typer.Option(help="New table even if an identical one exists")] = False,
    wait: Annotated[bool, typer.Option(help="Wait, with a progress bar")] = True,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build (or resume / reuse) a latency table, then validate it on random archs."""
    with connect(server, token, flag_label) as c:
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
            **({"validate_exported": validate_exported} if validate_exported else {}),
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
    if as_json:
        print(t.model_dump_json())
        return
    _show(t)
    if t.status == "failed":
        raise typer.Exit(EXIT_FAILED)


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
    with connect(server, token) as c:
        if format:
            text = c.export_table(table_id, format)
            if output:
                output.write_text(text)
                err.print(f"wrote {output}")
            else:
                print(text, end="")
            return
        t = c.table(table_id)
    if as_json:
        print(t.model_dump_json())
        return
    err.print(_phase(t))
    _show(t)


TABLE_COLUMNS = (
    Col("id", numeric=True),
    Col("space"),
    Col("res", rank=2, numeric=True),
    Col("device", rank=1),
    Col("runtime", rank=3),
    Col("thr", rank=4, numeric=True),
    Col("status"),
    Col("done", rank=2, numeric=True),
    Col("acc10 %", rank=1),
)


@table_app.command("list")
def list_(
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List latency tables."""
    with connect(server, token) as c:
        tables = c.tables()
    if as_json:
        print(json.dumps([t.model_dump(mode="json") for t in tables]))
        return
    rows = [
        [
            str(t.id),
            t.space,
            str(t.resolution),
            t.device,
            t.runtime,
            str(t.threads),
            t.status,
            f"{t.progress.done}/{t.progress.total}",
            "-" if t.quality is None else f"{100 * t.quality.acc10:.1f} ({t.quality.predictor})",
        ]
        for t in tables
    ]
    print_table(console, "latency tables", TABLE_COLUMNS, rows, wide)


@table_app.command("resume")
def resume(table_id: int, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Retry a table's failed blocks and watch it finish."""
    with connect(server, token) as c:
        c.resume_table(table_id)
        t = watch_table(c, table_id)
    _show(t)
    if t.status == "failed":
        raise typer.Exit(EXIT_FAILED)


def _load_archs(arch: list[str] | None, file: Path | None) -> list[Any]:
    archs: list[Any] = []
    for i, text in enumerate(arch or []):
        try:
            archs.append(json.loads(text))
        except json.JSONDecodeError as exc:
            stop(f"--arch number {i + 1} is not valid JSON: {exc}")
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            stop(f"--file {file}: cannot read a JSON list of architectures: {exc}")
        archs.extend(loaded if isinstance(loaded, list) else [loaded])
    return archs


PREDICT_COLUMNS = (
    Col("#", numeric=True),
    Col("latency ms", numeric=True),
    Col("lut_sum ms", numeric=True),
    Col("architecture", rank=1),
)


@table_app.command("predict")
def predict(
    table_id: Annotated[int, typer.Argument(help="The table's id (see 'latencylab table list')")],
    arch: Annotated[
        list[str] | None,
        typer.Option(
            help='An architecture as JSON, e.g. \'{"ks": [...], "e": [...], "d": [...]}\' '
            "(repeat); the encoding is the table's space's (docs/tables.md)"
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="A JSON file with a list of architectures"),
    ] = None,
    random_n: Annotated[
        int | None,
        typer.Option("--random", min=1, max=200_000, help="N architectures sampled from the space"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of --random")] = 0,
    resolution: Annotated[int | None, typer.Option(help="Default: the table's")] = None,
    wide: WideOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict the latency of architectures with a table: latency_ms (the table's best
    predictor, calibrated where that validated better) and lut_sum_ms (the plain block sum)."""
    if sum(x is not None for x in (arch, file, random_n)) != 1:
        stop(
            "give the architectures one way: --arch JSON (repeat), --file archs.json or --random N"
        )
    archs = _load_archs(arch, file)
    with connect(server, token) as c:
        if random_n is not None:
            t = c.table(table_id)
            rng = random.Random(seed)
            archs = [get_space(t.space).sample(rng) for _ in range(random_n)]
        if not archs:
            stop(f"--file {file} holds no architectures")
        pred = c.predict(table_id, archs, resolution)
    if as_json:
        predictions = [
            {"arch": a, "latency_ms": y, "lut_sum_ms": s}
            for a, y, s in zip(archs, pred.latency_ms, pred.lut_sum_ms, strict=True)
        ]
        print(
            json.dumps({"table": table_id, "predictor": pred.predictor, "predictions": predictions})
        )
        return
    rows = [
        [str(i + 1), f"{y:.3f}", f"{s:.3f}", json.dumps(a, separators=(",", ":"))]
        for i, (a, y, s) in enumerate(zip(archs, pred.latency_ms, pred.lut_sum_ms, strict=True))
    ]
    title = f"table {table_id}: latency_ms by {pred.predictor}"
    print_table(console, title, PREDICT_COLUMNS, rows, wide)
