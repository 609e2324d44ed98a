"""The results table of ``latencylab submit`` / ``latencylab results``, at any width.

At 80 columns it shows runtime, device, status and p50/p90/p99 (mean when it fits); precision,
batch size and threads move into the title when every row shares them; ``--wide`` shows every
column. A result with warnings says so in its status cell, and the warnings follow the table.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from latencylab.cli_layout import Col, print_table
from latencylab.schemas import BenchmarkPublic, ResultPublic

COLUMNS = (
    Col("result", rank=4, numeric=True),
    Col("runtime"),
    Col("device"),
    Col("prec", rank=5, constant_in_title=True),
    Col("batch", rank=5, numeric=True, constant_in_title=True),
    Col("thr", rank=5, numeric=True, constant_in_title=True),
    Col("status"),
    Col("p50 ms", numeric=True),
    Col("p90 ms", rank=1, numeric=True),
    Col("p99 ms", rank=1, numeric=True),
    Col("mean ms", rank=2, numeric=True),
    Col("CoV", rank=3, numeric=True),
    Col("runs", rank=3, numeric=True),
    Col("load ms", rank=6, numeric=True),
    Col("peak RSS MB", rank=6, numeric=True),
    Col("mode", rank=4),
    Col("flags", rank=2),
)
"""Rank 0 is always shown; higher ranks are dropped first when the terminal is narrow."""


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


SAID_BY_WARNINGS = frozenset({"too_few_runs"})
"""Flag codes a result's protocol warnings already state (not printed twice)."""


def _warning_flags(r: ResultPublic) -> list[str]:
    return [f.code for f in r.flags if f.severity == "warning"]


def status_cell(r: ResultPublic) -> str:
    """The status, marked when the result carries warnings or warning quality flags (⚑; both
    listed under the table)."""
    if r.status != "succeeded":
        return f"[red]{escape(r.status)}[/red]"
    mark = " ⚑" if _warning_flags(r) else ""
    return f"[yellow]{r.status} (warning){mark}[/yellow]" if r.warnings else f"{r.status}{mark}"


def result_row(r: ResultPublic) -> list[str]:
    lat = r.latency_ms
    peak = r.memory.get("peak_rss_mb")
    return [
        str(r.id),
        escape(r.runtime),
        escape(r.device),
        escape(r.precision),
        str(r.batch_size),
        str(r.threads),
        status_cell(r),
        _fmt(lat.p50 if lat else None),
        _fmt(lat.p90 if lat else None),
        _fmt(lat.p99 if lat else None),
        _fmt(lat.mean if lat else None),
        _fmt(lat.cov if lat else None, 4),
        str(r.runs),
        _fmt(r.load_ms, 1),
        _fmt(peak if isinstance(peak, int | float) else None, 1),
        escape(f"{r.mode} x{r.repeats.count}" if r.repeats else r.mode or "-"),
        f"[red]{escape(' '.join(_warning_flags(r)))}[/red]" if _warning_flags(r) else "",
    ]


def print_results(console: Console, bench: BenchmarkPublic, wide: bool = False) -> None:
    title = f"benchmark {bench.id} ({bench.status})"
    if not bench.results:
        console.print(f"{title}: no results yet")
        return
    print_table(console, title, COLUMNS, [result_row(r) for r in bench.results], wide)


def print_problems(err: Console, bench: BenchmarkPublic) -> None:
    """Failed jobs and the warnings of results, one line each (after the table)."""
    for j in bench.jobs:
        if j.status == "failed" and j.error:
            where = escape(f"{j.runtime} on {j.device_name or j.device}")
            err.print(f"[red]job {j.id} ({where}) failed:[/red] {escape(j.error)}", soft_wrap=True)
    for r in bench.results:
        for w in r.warnings:
            where = escape(f"{r.runtime} on {r.device}")
            err.print(
                f"[yellow]result {r.id} ({where}) warning:[/yellow] {escape(w)}", soft_wrap=True
            )
        for f in r.flags:  # quality flags (docs/measurement.md): the ⚑ of the table
            if f.severity == "warning" and not (r.warnings and f.code in SAID_BY_WARNINGS):
                where = escape(f"{r.runtime} on {r.device}")
                err.print(
                    f"[red]result {r.id} ({where}) ⚑ {f.code}:[/red] {escape(f.message)}",
                    soft_wrap=True,
                )
