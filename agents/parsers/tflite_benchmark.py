"""Parse TFLite ``benchmark_model`` and LiteRT ``benchmark_litert_model`` output.

Handles TF 1.x ``Average inference timings in us: Warmup/Init/no stats``; ``count=..
first=.. curr=.. min=.. max=.. avg=.. std=..`` run lines (first block after ``Running
benchmark for at least`` = warm-up, second = timed runs); ``Inference timings in us:``;
``Peak memory footprint (MB)`` and the later ``Memory footprint delta ... (MB)``
wording; and the LiteRT CompiledModel ``Label (qualifier):  value ms (N runs)`` block.
``INFO: `` / ``INFO: [file.h:NN] `` prefixes are removed first.  Unknown ``key: value``
lines land in ``extra``; unknown ``Inference (x)`` lines (median/p5/p95 of the Python
``litert-benchmark`` CLI) land in ``inference.extra_ms``.  Op-profiling tables are tab
separated; columns are found by the header row (so with or without ``[start]``);
header-less fragments are laid out by their cell count.

Units: the tools print microseconds; every ``*_ms`` field here is milliseconds.  LiteRT
prints ``Inference (std)`` without a unit; it is taken to be ms like the avg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PREFIX = re.compile(  # C++ "INFO: [file.cc:12] " or Python logging "2026-.. INFO name: "
    r"^(?:\d{4}-\d\d-\d\d [\d:]{8} [A-Z]+ [\w.]+: |(?:INFO|WARNING|ERROR|VERBOSE): (?:\[[^\]\s]+:\d+\] ?)?)"
)
_TITLE = re.compile(r"^=+ (.+?) =+$|^(BENCHMARK RESULTS)$")  # C++ / Python litert-benchmark
_RUNS = re.compile(r"^(?P<label>Timings \(microseconds\): )?(?P<kv>count=\d+(?: \w+=\S+)*)$")
_INIT = re.compile(r"^Initialized session in (\S+?)ms\.?$")
_TIMINGS = re.compile(r"^(?:Average inference timings|Inference timings) in us: (.*)$")
_MEMORY = re.compile(
    r"^(?P<kind>Peak memory footprint|Memory footprint delta from the start of the tool)"
    r" \(MB\): init=(?P<init>\S+) overall=(?P<overall>\S+)$"
)
_PEAK = re.compile(r"^Overall peak memory footprint \(MB\)[^:]*: (\S+)$")
_NODES = re.compile(r"^Number of nodes executed: (\d+)$")
_FLAG = re.compile(r"^([^:\[\]]+?)\s*: \[(.*)\]$")
_LITERT = re.compile(
    r"^(?P<key>[A-Za-z][A-Za-z ]*?(?: \((?P<q>[^)]*)\))?):\s+(?P<v>-?\d+(?:\.\d+)?)"
    r"(?:\s*(?P<u>ms|us|MB/s|MB))?(?: \((?P<n>\d+) runs\))?$"
)
_KEYVAL = re.compile(r"^([A-Za-z][^:]*?):\s+(.+)$")
_NAME = re.compile(r"^\[(.*)\](?::(\d+))?$")
_OP_LAYOUT = {
    9: ("node type", "start", "first", "avg ms", "%", "cdf%", "mem kb", "times called", "name"),
    8: ("node type", "first", "avg ms", "%", "cdf%", "mem kb", "times called", "name"),
}
_SUMMARY_LAYOUT = ("node type", "count", "avg ms", "avg %", "cdf %", "mem kb", "times called")


@dataclass(frozen=True)
class RunStats:
    count: int | None
    avg_ms: float | None
    first_ms: float | None = None
    curr_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    extra_ms: dict[str, float] = field(default_factory=dict)  # median, p5, p95 ...


@dataclass(frozen=True)
class OpProfileRow:
    name: str
    type: str
    time_ms: float  # [avg ms]
    percentage: float
    times_called: int
    first_ms: float | None = None
    start_ms: float | None = None
    cdf_percentage: float | None = None
    mem_kb: float | None = None
    node_index: int | None = None  # the ":71" suffix of NNAPI/delegate rows


@dataclass(frozen=True)
class NodeTypeRow:
    type: str
    count: int
    time_ms: float  # [avg ms]
    percentage: float
    cdf_percentage: float | None
    mem_kb: float | None
    times_called: int


@dataclass
class TfliteBenchmarkResult:
    format: str = "tflite"  # or "litert_compiled_model" (C++), "litert_python" (pip CLI)
    flags: dict[str, str] = field(default_factory=dict)
    model_size_mb: float | None = None
    init_ms: float | None = None
    warmup_first_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None  # timed runs; else the profiler_timings line
    profiler_timings: RunStats | None = None  # old "Timings (microseconds): count=..." line
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_kind: str | None = None  # "peak" (old wording), "delta" or "footprint" (LiteRT)
    peak_memory_mb: float | None = None
    throughput_mb_s: float | None = None
    signature: str | None = None
    nodes_executed: int | None = None
    op_profile: list[OpProfileRow] = field(default_factory=list)  # Run Order of timed runs
    top_ops: list[OpProfileRow] = field(default_factory=list)
    node_type_summary: list[NodeTypeRow] = field(default_factory=list)
    init_op_profile: list[OpProfileRow] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)


def _f(text: str, line: str) -> float:
    try:
        return float(text.strip().rstrip("%"))
    except ValueError:
        raise ValueError(f"tflite benchmark: bad number {text!r} in {line!r}") from None


def _mk_stats(count: int | None, ms: dict[str, float]) -> RunStats:
    v = dict(ms)
    avg, first, curr = v.pop("avg", None), v.pop("first", None), v.pop("curr", None)
    low, high, std = v.pop("min", None), v.pop("max", None), v.pop("std", None)
    return RunStats(count, avg, first, curr, low, high, std, v)


def _run_stats(kv: str, line: str) -> RunStats:
    pairs = dict(item.split("=", 1) for item in kv.split())
    count = int(pairs.pop("count"))
    return _mk_stats(count, {k: _f(v, line) / 1000.0 for k, v in pairs.items()})


@dataclass
class _Table:
    """Where we are in the op-profiling output."""

    phase: str = "run"  # "init" after "Profiling Info for Benchmark Initialization:"
    section: str = ""  # "Run Order", "Top by Computation Time", "Summary by node type"
    header: tuple[str, ...] | None = None


@dataclass
class _Acc:  # collects LiteRT "Warmup (x)" / "Inference (x)" lines
    count: int | None = None
    ms: dict[str, float] = field(default_factory=dict)


def _table_row(cells: list[str], header: tuple[str, ...], line: str) -> dict[str, str]:
    if len(cells) != len(header):
        raise ValueError(f"tflite benchmark: {len(cells)} cells vs header {header}: {line!r}")
    return dict(zip(header, cells, strict=True))


def _op_row(row: dict[str, str], line: str) -> OpProfileRow:
    m = _NAME.match(row["name"])
    name, index = (m[1], int(m[2]) if m[2] else None) if m else (row["name"], None)
    opt = {k: _f(row[k], line) for k in ("first", "start", "cdf%", "mem kb") if k in row}
    return OpProfileRow(
        name, row["node type"], _f(row["avg ms"], line), _f(row["%"], line),
        int(row["times called"]), opt.get("first"), opt.get("start"), opt.get("cdf%"),
        opt.get("mem kb"), index,
    )  # fmt: skip


def _summary_row(row: dict[str, str], line: str) -> NodeTypeRow:
    opt = {k: _f(row[k], line) for k in ("cdf %", "mem kb") if k in row}
    return NodeTypeRow(
        row["node type"], int(row["count"]), _f(row["avg ms"], line), _f(row["avg %"], line),
        opt.get("cdf %"), opt.get("mem kb"), int(row["times called"]),
    )  # fmt: skip


def _table_line(r: TfliteBenchmarkResult, cells: list[str], ctx: _Table, line: str) -> None:
    try:
        if "Summary by node type" in ctx.section:
            row = _table_row(cells, ctx.header or _SUMMARY_LAYOUT, line)
            r.node_type_summary.append(_summary_row(row, line))
            return
        op = _op_row(_table_row(cells, ctx.header or _OP_LAYOUT.get(len(cells), ()), line), line)
    except KeyError as exc:
        raise ValueError(f"tflite benchmark: no {exc.args[0]!r} column for {line!r}") from None
    if ctx.phase == "init":
        if ctx.section in ("", "Run Order"):
            r.init_op_profile.append(op)
    elif ctx.section.startswith("Top by"):
        r.top_ops.append(op)
    else:
        r.op_profile.append(op)


_TIMING_FIELDS = {
    "init": "init_ms", "first inference": "warmup_first_ms", "warmup": "warmup_avg_ms",
    "warmup (avg)": "warmup_avg_ms", "inference": "inference_avg_ms",
    "inference (avg)": "inference_avg_ms", "no stats": "inference_avg_ms",
}  # fmt: skip
_LITERT_FIELDS = {
    "The input model file size": "model_size_mb", "Model size": "model_size_mb",
    "Model initialization": "init_ms", "Throughput": "throughput_mb_s",
    "Init footprint": "memory_init_mb", "Overall footprint": "memory_overall_mb",
    "Peak memory usage": "peak_memory_mb",
}  # fmt: skip


def _timings_line(r: TfliteBenchmarkResult, body: str, line: str) -> None:
    for item in body.split(","):
        key, _, value = item.partition(":")
        if (name := _TIMING_FIELDS.get(key.strip().lower())) is None:
            r.extra[key.strip()] = value.strip()
        else:
            setattr(r, name, _f(value, line) / 1000.0)


def _litert_line(r: TfliteBenchmarkResult, m: re.Match[str], acc: dict[str, _Acc]) -> None:
    key, q, base = m["key"], (m["q"] or "").lower(), m["key"].split(" (")[0]
    value = float(m["v"]) / 1000.0 if m["u"] == "us" else float(m["v"])
    if base in ("Warmup", "Inference") and q:
        run = acc.setdefault(base, _Acc())
        run.ms[q] = value
        run.count = int(m["n"]) if m["n"] else run.count
    elif base in _LITERT_FIELDS:
        setattr(r, _LITERT_FIELDS[base], value)
        if "footprint" in base:
            r.memory_kind = "footprint"
    else:
        r.extra[key] = m.group(0).split(":", 1)[1].strip()


def parse_tflite_benchmark(text: str) -> TfliteBenchmarkResult:
    """Parse benchmark_model / benchmark_litert_model output (whole or in part)."""
    r = TfliteBenchmarkResult()
    runs_seen, ctx = 0, _Table()
    litert: dict[str, _Acc] = {}
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw.rstrip("\r\n"), count=1)
        if line.startswith("\t") and line.strip():
            cells = [c.strip() for c in line.split("\t")[1:]]
            if cells[0].startswith("["):
                ctx.header = tuple(c.strip("[]").lower() for c in cells)
            else:
                _table_line(r, cells, ctx, line)
            continue
        line = line.strip()
        if not line:
            continue
        if m := _TITLE.match(line):
            ctx.section, ctx.header = m[1] or m[2], None
            if ctx.section == "BENCHMARK RESULTS":
                r.format = "litert_python" if m[2] else "litert_compiled_model"
        elif line.endswith("Profiling Info for Benchmark Initialization:"):
            ctx = _Table("init")
        elif line.endswith("Profiling Info for Regular Benchmark Runs:"):
            ctx = _Table("run")
        elif line == "STARTING!" or line.startswith("Running benchmark for at least"):
            runs_seen = 0 if line == "STARTING!" else runs_seen + 1  # 1: warm-up, 2: timed
        elif m := _RUNS.match(line):
            stats = _run_stats(m["kv"], line)
            if m["label"]:
                r.profiler_timings = stats
            elif runs_seen == 1:
                r.warmup = stats
            else:
                r.inference = stats
        elif m := _INIT.match(line):
            r.init_ms = _f(m[1], line)
        elif m := _TIMINGS.match(line):
            _timings_line(r, m[1], line)
        elif m := _MEMORY.match(line):
            r.memory_kind = "peak" if m["kind"].startswith("Peak") else "delta"
            r.memory_init_mb, r.memory_overall_mb = _f(m["init"], line), _f(m["overall"], line)
        elif m := _PEAK.match(line):
            r.peak_memory_mb = _f(m[1], line)
        elif m := _NODES.match(line):
            r.nodes_executed = int(m[1])
        elif m := _FLAG.match(line):
            r.flags[m[1].strip()] = m[2]
        elif line.startswith(("Signature name:", "Using signature:")):
            r.signature = line.split(":", 1)[1].strip()
        elif m := _LITERT.match(line):
            _litert_line(r, m, litert)
        elif m := _KEYVAL.match(line):
            r.extra[m[1]] = m[2]
        # anything else is free-form log text (delegate messages, notes): ignored
    _finish(r, litert)
    if r == TfliteBenchmarkResult():
        first = text.strip().splitlines()[:1]
        raise ValueError(f"tflite benchmark: no benchmark output recognised (starts {first!r})")
    return r


def _finish(r: TfliteBenchmarkResult, acc: dict[str, _Acc]) -> None:
    for name, run in acc.items():  # LiteRT "Warmup (x)" / "Inference (x)" lines
        setattr(r, name.lower(), _mk_stats(run.count, run.ms))
    r.inference = r.inference or r.profiler_timings
    if (w := r.warmup) is not None:
        r.warmup_first_ms = r.warmup_first_ms if r.warmup_first_ms is not None else w.first_ms
        r.warmup_avg_ms = r.warmup_avg_ms if r.warmup_avg_ms is not None else w.avg_ms
    if r.inference_avg_ms is None and r.inference is not None:
        r.inference_avg_ms = r.inference.avg_ms
