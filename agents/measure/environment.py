"""What the machine looked like while it measured (for reproducibility).

Every probe is best-effort: anything unreadable is omitted or ``None``, nothing raises.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "OMP_WAIT_POLICY",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "ORT_NUM_THREADS",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "GOMP_CPU_AFFINITY",
    "CUDA_VISIBLE_DEVICES",
)
_CPU_SYS = Path("/sys/devices/system/cpu")
_MAX_CPUFREQ_CPUS = 64


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    """CPU model name from /proc/cpuinfo (x86 ``model name``, Arm ``Hardware``/``Model``)."""
    text = _read(Path("/proc/cpuinfo"))
    if text:
        found: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Hardware", "Model", "cpu model", "Processor") and value:
                found.setdefault(key, value.strip())
        for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
            if key in found:
                return found[key]
    return platform.processor() or None


def physical_cores() -> int | None:
    """Physical core count (psutil if present, else unique (package, core) ids)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except Exception:
        pass
    text = _read(Path("/proc/cpuinfo"))
    if not text:
        return None
    cores: set[tuple[str, str]] = set()
    phys = core = ""
    for line in [*text.splitlines(), ""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not line.strip():
            if core:
                cores.add((phys, core))
            phys = core = ""
    return len(cores) or None


def cpu_affinity() -> list[int] | None:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return _safe(lambda: sorted(os.sched_getaffinity(0)))
    return None


def cpufreq(cpus: list[int] | None) -> dict[str, dict[str, Any]]:
    """Governor and cur/min/max frequency (MHz) of each CPU in use, where readable."""
    out: dict[str, dict[str, Any]] = {}
    ids = cpus if cpus is not None else list(range(os.cpu_count() or 0))
    for cpu in ids[:_MAX_CPUFREQ_CPUS]:
        base = _CPU_SYS / f"cpu{cpu}" / "cpufreq"
        if not base.is_dir():
            continue
        info: dict[str, Any] = {}
        gov = _read(base / "scaling_governor")
        if gov:
            info["governor"] = gov
        for key, fname in (
            ("cur_mhz", "scaling_cur_freq"),
            ("min_mhz", "scaling_min_freq"),
            ("max_mhz", "scaling_max_freq"),
        ):
            raw = _read(base / fname)
            if raw and raw.isdigit():
                info[key] = int(raw) / 1000.0  # kHz -> MHz
        if info:
            out[str(cpu)] = info
    return out


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages."""
    if hasattr(os, "getloadavg"):
        return _safe(lambda: [round(x, 2) for x in os.getloadavg()])
    return None


HOST_SAMPLE_S = 0.2
"""How long ``host_load`` watches the CPUs (at 100 ticks/s: 20 ticks per CPU, 5% steps)."""
_IDLE_FIELDS = ("idle", "iowait")
_GUEST_FIELDS = ("guest", "guest_nice")  # already counted in user / nice


def _cpu_totals(times: Any) -> tuple[float, float]:
    """(busy, total) seconds summed over all CPUs from ``psutil.cpu_times()``."""
    fields = {k: float(v) for k, v in times._asdict().items() if k not in _GUEST_FIELDS}
    total = sum(fields.values())
    return total - sum(fields.get(k, 0.0) for k in _IDLE_FIELDS), total


def host_load(window_s: float = HOST_SAMPLE_S) -> dict[str, Any]:
    """How busy the host is right now: load average, and the CPU time other processes used
    over ``window_s`` (all CPUs' busy time, steal included, minus this process's own), while
    this process sleeps. ``other_cpus`` is in CPUs (0..``logical_cores``), ``other_share``
    its share of all CPU time. Needs psutil for the CPU sample; the load average always."""
    cores = os.cpu_count()
    out: dict[str, Any] = {"logical_cores": cores, "window_s": window_s}
    avg = loadavg()
    if avg:
        out["loadavg_1m"] = avg[0]
    try:
        import psutil

        me = psutil.Process()
        busy0, total0 = _cpu_totals(psutil.cpu_times())
        mine0 = sum(me.cpu_times()[:2])
        t0 = time.perf_counter()
        time.sleep(window_s)
        busy1, total1 = _cpu_totals(psutil.cpu_times())
        mine1 = sum(me.cpu_times()[:2])
        elapsed = time.perf_counter() - t0
    except Exception as exc:  # psutil missing or /proc unreadable: the load average only
        out["cpu_sample_error"] = f"{type(exc).__name__}: {exc}"
        return out
    span = total1 - total0
    if span <= 0 or not cores:
        return out
    others = max(0.0, (busy1 - busy0) - (mine1 - mine0))
    out.update(
        window_s=round(elapsed, 3),
        busy_cpus=round((busy1 - busy0) / span * cores, 3),
        self_cpus=round((mine1 - mine0) / span * cores, 3),
        other_cpus=round(others / span * cores, 3),
        other_share=round(min(1.0, others / span), 3),
        method="psutil",
    )
    return out


def numpy_version() -> str | None:
    """numpy's version, only if numpy was imported already or is importable."""
    try:
        import numpy

        return str(numpy.__version__)
    except Exception:
        return None


def collect_environment(runner_env: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The environment dict of a ``MeasureResult`` (system facts + ``runner_env()``)."""
    affinity = cpu_affinity()
    freqs = cpufreq(affinity)
    governors = sorted({f["governor"] for f in freqs.values() if "governor" in f})
    env: dict[str, Any] = {
        "cpu_model": _safe(cpu_model),
        "logical_cores": os.cpu_count(),
        "physical_cores": _safe(physical_cores),
        "cpu_affinity": affinity,
        "cpufreq_governor": governors[0] if len(governors) == 1 else (governors or None),
        "cpufreq": freqs or None,
        "os": platform.system(),
        "kernel": platform.release(),
        "platform": _safe(platform.platform),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": numpy_version(),
        "hostname": _safe(socket.gethostname),
        "loadavg": loadavg(),
        "pid": os.getpid(),
        "executable": sys.executable,
        "thread_env": {k: os.environ[k] for k in THREAD_ENV_VARS if k in os.environ},
    }
    if runner_env is not None:
        try:
            env.update(runner_env())
        except Exception as exc:  # the runner's own report must never fail a measurement
            env["runner_environment_error"] = f"{type(exc).__name__}: {exc}"
    return env
