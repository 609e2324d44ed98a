"""``latencylab predictor``: build kernel-level latency predictors, watch them, show their
accuracy, and predict a model's latency (on the server, or locally from the bundle)."""

from __future__ import annotations

import json
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
from latencylab.predictors import ModelPrediction, PredictorPublic

predictor_app = typer.Typer(help="Kernel-level latency predictors.", no_args_is_help=True)


def _phase(p: PredictorPublic) -> str:
    g = p.progress
    if p.status != "building":
        return f"predictor {p.id} {p.status}"
    if p.phase == "discovery":
        return f"predictor {p.id} fusion probes {g.probes_done}/{g.probes_total}"
    if p.phase in ("initial", "refine"):
        where = "initial" if p.phase == "initial" else f"refine {p.round}"
        return f"predictor {p.id} {where}: samples {g.samples_done}/{g.samples_total}"
    if p.phase == "calibrate":
        return f"predictor {p.id} calibrating {g.calibration_done}/{g.calibration_total} networks"
    return f"predictor {p.id} validating {g.networks_done}/{g.networks_total} networks"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}"


def accuracy_table(p: PredictorPublic) -> Table:
    out = Table(title=f"predictor {p.id}: {p.runtime} on {p.device} ({p.status})")
    for col in ("family", "n", "acc5 %", "acc10 %", "RMSPE %", "Spearman"):
        out.add_column(col, justify="left" if col == "family" else "right")
    acc = p.accuracy or {}
    rows = [*sorted((acc.get("families") or {}).items()), ("overall", acc.get("overall"))]
    for name, s in rows:
        if not s:
            continue
        rho = s.get("rho")
        out.add_row(
            name, str(s.get("n")), _pct(s.get("acc5")), _pct(s.get("acc10")),
            _pct(s.get("rmspe")), "-" if rho is None else f"{rho:.3f}",
        )  # fmt: skip
    return out


def _show(p: PredictorPublic) -> None:
    console.print(accuracy_table(p))
    b = p.bias
    if b is not None and b.n:
        console.print(
            f"bias check: {b.n} kernels batched vs alone, median ratio {b.median_ratio:.3f}, "
            f"largest deviation {100 * (b.max_abs_dev or 0):.1f}%"
        )
    cal, plain = p.calibration, (p.accuracy_uncalibrated or {}).get("overall")
    if cal is not None:
        coef = ", ".join(f"{t} {c:.3g}" for t, c in zip(cal.terms, cal.coef, strict=True))
        loo = cal.leave_one_out_rmspe
        console.print(
            f"calibration on {len(cal.networks)} networks ({coef}): RMSPE on them "
            f"{_pct(cal.uncalibrated_rmspe)}% -> {_pct(cal.fit_rmspe)}%"
            + (f", leave-one-out {_pct(loo)}%" if loo is not None else "")
            + (f"; validation RMSPE uncalibrated {_pct(plain.get('rmspe'))}%" if plain else "")
        )
    g = p.progress
    console.print(
        f"samples: {g.samples_done} ({g.samples_reused} reused, {g.samples_failed} failed) in "
        f"{g.jobs} jobs; probes {g.probes_done}; layout conversions {g.conversions_done}; "
        f"calibration networks {g.calibration_done}; "
        f"networks {g.networks_done}"
    )
    if p.error:
        err.print(f"[yellow]{p.error}[/yellow]")


def watch(c: Client, predictor_id: int, quiet: bool = False) -> PredictorPublic:
    """Poll the build with a progress bar until it succeeded or failed."""
    if quiet:
        return c.wait_predictor(predictor_id)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("predictor", total=None)

        def update(p: PredictorPublic) -> None:
            bar.update(task, completed=p.progress.done, total=p.progress.total or None,
                       description=_phase(p))  # fmt: skip

        return c.wait_predictor(predictor_id, on_update=update)


def _options(file: Path | None, pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if file is not None:
        try:
            out.update(json.loads(file.read_text()))
        except (OSError, ValueError) as exc:
            stop(f"--options-file {file}: cannot read a JSON object: {exc}")
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            stop(f"--option {pair!r}: give key=value (value as JSON, e.g. initial_per_type=20)")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@predictor_app.command("build")
def build(
    device: Annotated[str, typer.Option(help="local, a device name or key:value")] = "local",
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch_size: int = 1,
    precision: str = "fp32",
    statistic: Annotated[str, typer.Option(help="min | p50 | mean")] = "min",
    option: Annotated[
        list[str] | None,
        typer.Option(help="A build option key=value (repeat), e.g. initial_per_type=20"),
    ] = None,
    options_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Build options as JSON")
    ] = None,
    settings: Annotated[
        str | None, typer.Option(help="Kernel measurement settings as JSON (MeasureSettings)")
    ] = None,
    network_settings: Annotated[
        str | None, typer.Option(help="Validation network measurement settings as JSON")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="New build even if an identical one exists")] = False,
    wait: Annotated[bool, typer.Option(help="Wait, with a progress bar")] = True,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build (or resume / reuse) a predictor on one device, then validate it."""
    extra: dict[str, Any] = {"options": _options(options_file, option)}
    for name, raw in (("settings", settings), ("network_settings", network_settings)):
        if raw is not None:
            try:
                extra[name] = json.loads(raw)
            except ValueError as exc:
                stop(f"--{name.replace('_', '-')}: not valid JSON: {exc}")
    with connect(server, token, flag_label) as c:
        p = c.create_predictor(
            device=device, runtime=runtime, threads=threads, precision=precision,
            batch_size=batch_size, statistic=statistic, fresh=fresh, **extra,
        )  # fmt: skip
        if not as_json:
            said = "the identical build" if p.reused else "building"
            err.print(f"predictor {p.id}: {said} on {p.device} ({p.status}, {p.phase})")
        if wait:
            p = watch(c, p.id, quiet=as_json).model_copy(update={"reused": p.reused})
    if as_json:
        print(p.model_dump_json())
        return
    _show(p)
    if p.status == "failed":
        raise typer.Exit(EXIT_FAILED)


@predictor_app.command("show")
def show(predictor_id: int, server: ServerOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:  # fmt: skip
    """Show a build's status, accuracy per family and bias check."""
    with connect(server, token) as c:
        p = c.get_predictor(predictor_id)
    if as_json:
        print(p.model_dump_json())
        return
    err.print(_phase(p))
    _show(p)


COLUMNS = (
    Col("id", numeric=True),
    Col("device", rank=1),
    Col("runtime"),
    Col("thr", rank=3, numeric=True),
    Col("status"),
    Col("phase", rank=2),
    Col("done", rank=2, numeric=True),
    Col("acc10 %", rank=1),
)


@predictor_app.command("list")
def list_(server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
          wide: WideOpt = False) -> None:  # fmt: skip
    """List predictor builds."""
    with connect(server, token) as c:
        found = c.predictors()
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in found]))
        return
    if not found:
        err.print(
            "no predictors yet: build one with "
            "`latencylab predictor build --device local --runtime onnxruntime --threads 1`"
        )
        return
    rows = [
        [str(p.id), p.device, p.runtime, str(p.threads), p.status, p.phase,
         f"{p.progress.done}/{p.progress.total}",
         _pct(((p.accuracy or {}).get("overall") or {}).get("acc10"))]
        for p in found
    ]  # fmt: skip
    print_table(console, "predictors", COLUMNS, rows, wide)


@predictor_app.command("resume")
def resume(predictor_id: int, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Retry a build's failed samples and networks, and watch it finish."""
    with connect(server, token) as c:
        c.resume_predictor(predictor_id)
        p = watch(c, predictor_id)
    _show(p)
    if p.status == "failed":
        raise typer.Exit(EXIT_FAILED)


KERNEL_COLUMNS = (Col("kernel"), Col("type", rank=1), Col("ms", numeric=True))


@predictor_app.command("predict")
def predict(
    predictor_id: Annotated[int, typer.Argument(help="The predictor's id")],
    model: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="An ONNX file: predicted here"),
    ] = None,
    model_id: Annotated[
        int | None, typer.Option(help="An uploaded model: predicted on the server")
    ] = None,
    wide: WideOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict a model's latency per kernel: an ONNX file here, or --model-id on the server."""
    if (model is None) == (model_id is None):
        stop("give the model one way: an ONNX file (predicted here) or --model-id N (uploaded)")
    with connect(server, token) as c:
        pred: ModelPrediction
        if model_id is not None:
            pred = c.predict_model(predictor_id, model_id)
        else:
            try:
                local = c.predictor(predictor_id)
            except ImportError as exc:
                stop(f"local prediction needs the 'predict' extra ({exc}); or use --model-id")
            assert model is not None
            pred = local.predict(model)
    if as_json:
        print(pred.model_dump_json())
        return
    rows = [[k.name, k.type, f"{k.latency_ms:.4f}"] for k in pred.kernels]
    print_table(
        console, f"predicted {pred.latency_ms:.3f} ms on {pred.device}", KERNEL_COLUMNS, rows, wide
    )
    for note in pred.notes:
        err.print(f"[yellow]{note}[/yellow]")
