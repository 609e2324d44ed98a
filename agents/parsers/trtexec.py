"""Parse TensorRT ``trtexec`` logs and its ``--exportTimes`` / ``--exportProfile`` JSON.

Log lines look like ``[MM/DD/YYYY-HH:MM:SS] [I] message`` (severity I/W/E/V/F).  The
``=== Performance summary ===`` block (TRT 8.x and 10.x) gives ``Throughput: N qps``,
one ``Name: min = x ms, max = ..., percentile(99%) = x ms`` line per metric (Latency,
Enqueue Time, H2D Latency, GPU Compute Time, D2H Latency and, in some older 8.x builds,
End-to-End Host Latency) and ``Total Host Walltime`` / ``Total GPU Compute Time`` in seconds.  The
final ``&&&& PASSED|FAILED TensorRT.trtexec [TensorRT v8400] # cmd`` line gives status,
version and command.  Trailing spaces on log lines are ignored.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field

__all__ = [
    "ExportProfile",
    "IterationTiming",
    "LatencyStats",
    "LayerProfile",
    "TrtexecResult",
    "decode_trt_version",
    "parse_export_profile",
    "parse_export_times",
    "parse_trtexec_log",
    "summarize_export_times",
]

_LOG = re.compile(r"^\[(?P<ts>[^\]]*)\] \[(?P<sev>[A-Z])\] ?(?P<msg>.*)$")
_STATUS = re.compile(
    r"^&&&& (?P<status>PASSED|FAILED|RUNNING|WAIVED)\s+(?P<prog>\S+)"
    r"(?: \[TensorRT v(?P<ver>\d+)\])?(?: \[(?P<build>b\d+)\])?(?: # (?P<cmd>.*))?$"
)
_STATS = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9 \-]*): (?P<body>min = .*)$")
_STAT_ITEM = re.compile(
    r"^(?P<key>min|max|mean|median|percentile\((?P<p>[\d.]+)%\)) = (?P<v>\S+) (?P<u>ms|us|s)$"
)
_THROUGHPUT = re.compile(r"^Throughput: (?P<v>\S+) qps$")
_TOTAL = re.compile(r"^Total (?P<what>Host Walltime|GPU Compute Time): (?P<v>\S+) s$")
_COV = re.compile(r"coefficient of variance = (?P<v>[\d.]+)%")
_UNIT_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}


@dataclass(frozen=True)
class LatencyStats:
    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    percentiles_ms: dict[float, float] = field(default_factory=dict)  # {99.0: x, ...}


@dataclass
class TrtexecResult:
    status: str | None = None  # PASSED / FAILED from the final "&&&&" line
    tensorrt_version: str | None = None  # "8.4.0", "10.13.0"
    tensorrt_version_tag: str | None = None  # "v8400" as printed
    build: str | None = None  # "b35" (TRT 10)
    command: str | None = None
    throughput_qps: float | None = None
    metrics: dict[str, LatencyStats] = field(default_factory=dict)  # keyed by printed name
    total_host_walltime_s: float | None = None
    total_gpu_compute_time_s: float | None = None
    warnings: list[str] = field(default_factory=list)  # [W] lines, continuations joined
    coefficient_of_variance_pct: float | None = None
    has_summary: bool = False

    @property
    def latency(self) -> LatencyStats | None:
        return self.metrics.get("Latency")

    @property
    def gpu_compute(self) -> LatencyStats | None:
        return self.metrics.get("GPU Compute Time")

    @property
    def enqueue(self) -> LatencyStats | None:
        return self.metrics.get("Enqueue Time")

    @property
    def end_to_end_host(self) -> LatencyStats | None:
        return self.metrics.get("End-to-End Host Latency")

    @property
    def unstable(self) -> bool:
        return self.coefficient_of_variance_pct is not None


def decode_trt_version(number: int) -> str:
    """``8400`` -> ``"8.4.0"`` (M*1000+m*100+p); ``101300`` -> ``"10.13.0"`` (M*10000+m*100+p)."""
    if number >= 100000:
        major, rest = divmod(number, 10000)
    else:
        major, rest = divmod(number, 1000)
    minor, patch = divmod(rest, 100)
    return f"{major}.{minor}.{patch}"


def _parse_stats(line: str, body: str) -> LatencyStats:
    values: dict[str, float] = {}
    pct: dict[float, float] = {}
    for item in body.split(", "):
        m = _STAT_ITEM.match(item.strip())
        if m is None:
            raise ValueError(f"trtexec: cannot read {item!r} in {line!r}")
        value = float(m["v"]) * _UNIT_MS[m["u"]]
        if m["p"] is not None:
            pct[float(m["p"])] = value
        else:
            values[m["key"]] = value
    try:
        return LatencyStats(values["min"], values["max"], values["mean"], values["median"], pct)
    except KeyError as exc:
        raise ValueError(f"trtexec: missing {exc.args[0]} in {line!r}") from None


def parse_trtexec_log(text: str) -> TrtexecResult:
    """Parse a trtexec log (whole or from the performance summary on)."""
    result = TrtexecResult()
    in_summary = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if m := _STATUS.match(line):
            result.status = m["status"] if m["status"] in ("PASSED", "FAILED") else result.status
            if m["ver"]:
                result.tensorrt_version_tag = "v" + m["ver"]
                result.tensorrt_version = decode_trt_version(int(m["ver"]))
            result.build = m["build"] or result.build
            result.command = m["cmd"] or result.command
            continue
        m_log = _LOG.match(line)
        if m_log is None:
            continue
        sev, msg = m_log["sev"], m_log["msg"].rstrip()
        if sev == "W":  # "* text" starts a warning, indented lines continue it
            if msg[:1].isspace() and result.warnings:
                result.warnings[-1] += " " + msg.strip()
            else:
                result.warnings.append(msg.removeprefix("* "))
            if m := _COV.search(msg):
                result.coefficient_of_variance_pct = float(m["v"])
            continue
        if msg.startswith("=== "):
            in_summary = msg == "=== Performance summary ==="
            result.has_summary = result.has_summary or in_summary
            continue
        if not in_summary or sev != "I":
            continue
        if m := _THROUGHPUT.match(msg):
            result.throughput_qps = float(m["v"])
        elif m := _STATS.match(msg):
            result.metrics[m["name"]] = _parse_stats(line, m["body"])
        elif m := _TOTAL.match(msg):
            if m["what"] == "Host Walltime":
                result.total_host_walltime_s = float(m["v"])
            else:
                result.total_gpu_compute_time_s = float(m["v"])
    if not result.has_summary and result.status is None:
        first = text.strip().splitlines()[:1]
        raise ValueError(
            f"trtexec: no '=== Performance summary ===' and no '&&&&' status line (starts {first!r})"
        )
    return result


# --- JSON exports -----------------------------------------------------------------------


@dataclass(frozen=True)
class IterationTiming:
    """One entry of ``--exportTimes``; all values in ms (absent fields are None)."""

    latency_ms: float
    compute_ms: float
    h2d_ms: float | None
    d2h_ms: float | None
    start_enqueue_ms: float | None
    end_enqueue_ms: float | None
    start_compute_ms: float | None
    end_compute_ms: float | None
    raw: dict[str, float]


@dataclass(frozen=True)
class LayerProfile:
    """One layer of ``--exportProfile``: total time over all runs, per-run average, share."""

    name: str
    time_ms: float
    average_ms: float
    percentage: float
    median_ms: float | None = None


def _load_list(text: str, what: str) -> list[dict[str, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"trtexec {what}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"trtexec {what}: expected a JSON list of objects")
    return data


def _num(entry: dict[str, object], key: str, what: str) -> float:
    value = entry.get(key)
    if not isinstance(value, int | float):
        raise ValueError(f"trtexec {what}: entry without numeric {key!r}: {entry!r}")
    return float(value)


def _opt(entry: dict[str, object], key: str) -> float | None:
    value = entry.get(key)
    return float(value) if isinstance(value, int | float) else None


def parse_export_times(text: str) -> list[IterationTiming]:
    """Parse ``trtexec --exportTimes=file.json`` (one object per timed iteration)."""
    out = []
    for entry in _load_list(text, "exportTimes"):
        out.append(
            IterationTiming(
                latency_ms=_num(entry, "latencyMs", "exportTimes"),
                compute_ms=_num(entry, "computeMs", "exportTimes"),
                h2d_ms=_opt(entry, "h2dMs"),
                d2h_ms=_opt(entry, "d2hMs"),
                start_enqueue_ms=_opt(entry, "startEnqMs"),
                end_enqueue_ms=_opt(entry, "endEnqMs"),
                start_compute_ms=_opt(entry, "startComputeMs"),
                end_compute_ms=_opt(entry, "endComputeMs"),
                raw={k: float(v) for k, v in entry.items() if isinstance(v, int | float)},
            )
        )
    return out


def summarize_export_times(
    times: list[IterationTiming], field_name: str = "latency_ms"
) -> LatencyStats:
    """min/max/mean/median and 90/95/99th percentiles (nearest-rank) of one timing field."""
    values = sorted(float(getattr(t, field_name)) for t in times)
    if not values:
        raise ValueError("trtexec exportTimes: no iterations to summarize")

    def rank(p: float) -> float:
        idx = math.ceil(p * len(values) / 100) - 1
        return values[max(0, min(len(values) - 1, idx))]

    pct = {p: rank(p) for p in (90.0, 95.0, 99.0)}
    return LatencyStats(
        values[0], values[-1], statistics.fmean(values), statistics.median(values), pct
    )


@dataclass(frozen=True)
class ExportProfile:
    count: int | None  # number of profiled runs, from the leading ``{ "count" : N }``
    layers: list[LayerProfile]

    @property
    def total_average_ms(self) -> float:
        return sum(layer.average_ms for layer in self.layers)


def parse_export_profile(text: str) -> ExportProfile:
    """Parse ``--exportProfile``: the leading ``{count}`` object, then one object per layer."""
    count: int | None = None
    layers = []
    for entry in _load_list(text, "exportProfile"):
        if "name" not in entry:
            if "count" in entry:
                count = int(_num(entry, "count", "exportProfile"))
            continue
        layers.append(
            LayerProfile(
                name=str(entry["name"]),
                time_ms=_num(entry, "timeMs", "exportProfile"),
                average_ms=_num(entry, "averageMs", "exportProfile"),
                percentage=_num(entry, "percentage", "exportProfile"),
                median_ms=_opt(entry, "medianMs"),
            )
        )
    return ExportProfile(count, layers)
