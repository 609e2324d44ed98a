"""A live progress display for a running benchmark (rich), used by ``latencylab submit``.

One line per job at any terminal width: the label takes what it needs (folded, never cut,
when the terminal is narrow) and the bar the rest."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

from latencylab.client import Client
from latencylab.schemas import BenchmarkPublic, JobPublic

# How far along a job is, by phase (the steady state fills the rest as it runs).
PHASES = {
    "queued": 0,
    "leased": 5,
    "download": 8,
    "import": 12,
    "load": 15,
    "first": 25,
    "warmup": 30,
    "steady": 40,
    "profile": 95,
    "done": 100,
}


def job_percent(job: JobPublic, max_duration_s: float) -> float:
    if job.status.finished:
        return 100
    phase = job.progress.get("phase", "queued")
    pct = float(PHASES.get(phase, 10))
    if phase == "steady" and max_duration_s > 0:
        pct += 55 * min(1.0, float(job.progress.get("elapsed_s", 0)) / max_duration_s)
    return pct


def job_label(job: JobPublic) -> str:
    where = job.device_name or job.device
    phase = job.progress.get("phase", job.status) if job.status == "running" else job.status
    runs = job.progress.get("runs")
    extra = f" {runs} runs" if runs else ""
    if job.status == "queued" and job.candidates:
        extra = f" (can run on: {', '.join(job.candidates)})"
    return f"job {job.id} {job.runtime}@{where}: {phase}{extra}"


def watch(
    client: Client, bench_id: int, quiet: bool = False, timeout: float = 3600
) -> BenchmarkPublic:
    """Poll the benchmark, drawing one bar per job, until it is done."""
    if quiet:
        return client.wait(bench_id, timeout=timeout)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}", table_column=Column(overflow="fold", ratio=3)),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10)),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        expand=True,
    ) as bar:
        tasks: dict[int, TaskID] = {}

        def update(bench: BenchmarkPublic) -> None:
            max_d = float(bench.settings.get("max_duration_s", 30.0))
            for job in bench.jobs:
                if job.id not in tasks:
                    tasks[job.id] = bar.add_task(job_label(job), total=100)
                bar.update(
                    tasks[job.id], completed=job_percent(job, max_d), description=job_label(job)
                )

        return client.wait(bench_id, timeout=timeout, on_update=update)
