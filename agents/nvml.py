"""NVIDIA GPU facts: for a GPU host's registration and for the GPU runners' ``environment()``.

NVML (``pynvml`` from ``nvidia-ml-py``, imported lazily) is the source; without it (or when
NVML fails) ``nvidia-smi --query-gpu=... --format=csv`` is run and parsed with
:mod:`agents.parsers.nvidia_smi`. Nothing here raises for a missing GPU: facts that cannot
be read are left out and the reason is recorded under ``error``. Imported by the runners in
the measuring subprocess: nothing of the agent loop (``agents.gpu`` launches a GPU agent).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import partial
from typing import Any

from agents.parsers.nvidia_smi import parse_query_gpu

# NVML clock types and clocks-event-reason bits (nvml.h: nvmlClockType_t, nvmlClocksEventReasons).
_CLOCK_TYPES = {"graphics": 0, "sm": 1, "mem": 2}
EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap",
    0x8: "hw_slowdown", 0x10: "sync_boost", 0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown", 0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}  # fmt: skip
#: Reasons that mean the clocks moved under the measurement (boost/throttle).
UNSTABLE_REASONS = frozenset(
    {"sw_power_cap", "hw_slowdown", "sync_boost", "sw_thermal_slowdown", "hw_thermal_slowdown",
     "hw_power_brake_slowdown"}
)  # fmt: skip
SMI_FIELDS = (
    "index,name,driver_version,compute_cap,memory.total,memory.used,clocks.sm,clocks.mem,"
    "clocks.gr,clocks.max.sm,clocks.max.mem,clocks.applications.gr,clocks.applications.mem,"
    "power.limit,power.draw,temperature.gpu,utilization.gpu,pstate"
)
SMI_BASIC_FIELDS = "index,name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem"
Run = Callable[[list[str]], str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # NVML raises NVMLError_NotSupported & co per query
        return None


def _reasons(mask: int | None) -> list[str] | None:
    if mask is None:
        return None
    return [name for bit, name in EVENT_REASONS.items() if mask & bit]


def nvml_device_info(index: int = 0) -> dict[str, Any]:
    """Facts of GPU ``index`` from NVML; raises ``RuntimeError`` when NVML is unusable."""
    try:
        import pynvml
    except ImportError as exc:
        raise RuntimeError("pynvml missing: pip install 'latencylab[gpu]' (nvidia-ml-py)") from exc
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        raise RuntimeError(f"NVML init failed ({exc}): is the NVIDIA driver loaded?") from exc
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        mem = _try(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
        cuda = _try(pynvml.nvmlSystemGetCudaDriverVersion)
        cc = _try(lambda: pynvml.nvmlDeviceGetCudaComputeCapability(h))
        clocks: dict[str, Any] = {}
        for label, ctype in _CLOCK_TYPES.items():
            for suffix, fn in (("", "GetClockInfo"), ("_max", "GetMaxClockInfo"),
                               ("_app", "GetApplicationsClock")):  # fmt: skip
                query = getattr(pynvml, f"nvmlDevice{fn}")
                clocks[f"{label}{suffix}_mhz"] = _try(partial(query, h, ctype))
        get_reasons = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        limit = _try(lambda: pynvml.nvmlDeviceGetPowerManagementLimit(h))
        draw = _try(lambda: pynvml.nvmlDeviceGetPowerUsage(h))
        return {
            "source": "nvml",
            "index": index,
            "name": _text(pynvml.nvmlDeviceGetName(h)),
            "memory_total_mb": round(mem.total / 2**20) if mem else None,
            "memory_used_mb": round(mem.used / 2**20, 1) if mem else None,
            "driver": _text(_try(pynvml.nvmlSystemGetDriverVersion)),
            "cuda_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
            "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
            "clocks": clocks,
            "clocks_event_reasons": _reasons(_try(lambda: get_reasons(h)) if get_reasons else None),
            "power_limit_w": limit / 1000 if limit is not None else None,
            "power_draw_w": draw / 1000 if draw is not None else None,
            "temperature_c": _try(lambda: pynvml.nvmlDeviceGetTemperature(h, 0)),
        }
    finally:
        _try(pynvml.nvmlShutdown)


def _run_smi(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stdout}{out.stderr}")
    return out.stdout


def info_from_smi_row(row: dict[str, Any]) -> dict[str, Any]:
    """Our device-info dict from one parsed ``--query-gpu`` CSV row (canonical field names)."""
    clocks = {
        "sm_mhz": row.get("clocks.current.sm"),
        "mem_mhz": row.get("clocks.current.memory"),
        "graphics_mhz": row.get("clocks.current.graphics"),
        "sm_max_mhz": row.get("clocks.max.sm"),
        "mem_max_mhz": row.get("clocks.max.memory"),
        "graphics_app_mhz": row.get("clocks.applications.graphics"),
        "mem_app_mhz": row.get("clocks.applications.memory"),
    }
    info = {
        "source": "nvidia-smi",
        "index": row.get("index"),
        "name": row.get("name"),
        "driver": row.get("driver_version"),
        "compute_capability": str(row["compute_cap"]) if row.get("compute_cap") else None,
        "memory_total_mb": row.get("memory.total"),
        "memory_used_mb": row.get("memory.used"),
        "clocks": {k: v for k, v in clocks.items() if v is not None},
        "power_limit_w": row.get("power.limit"),
        "power_draw_w": row.get("power.draw"),
        "temperature_c": row.get("temperature.gpu"),
        "utilization_pct": row.get("utilization.gpu"),
        "pstate": row.get("pstate"),
    }
    return {k: v for k, v in info.items() if v is not None}


def smi_device_info(index: int = 0, run: Run = _run_smi, smi: str = "nvidia-smi") -> dict[str, Any]:
    """Facts of GPU ``index`` from ``nvidia-smi`` (the full query, else a basic one)."""
    errors = []
    for fields in (SMI_FIELDS, SMI_BASIC_FIELDS):  # old drivers lack compute_cap & co
        try:
            text = run([smi, "-i", str(index), f"--query-gpu={fields}", "--format=csv"])
            rows = parse_query_gpu(text)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
            continue
        if rows:
            return info_from_smi_row(rows[-1])
    raise RuntimeError("; ".join(errors) or "nvidia-smi printed no GPU row")


def device_info(index: int = 0, run: Run = _run_smi) -> dict[str, Any]:
    """NVML facts, else nvidia-smi facts, else ``{"error": ...}`` (never raises)."""
    try:
        return nvml_device_info(index)
    except Exception as nvml_exc:
        try:
            info = smi_device_info(index, run)
            info["nvml_error"] = str(nvml_exc)
            return info
        except Exception as smi_exc:
            return {"index": index, "error": f"NVML: {nvml_exc}; nvidia-smi: {smi_exc}"}


def nvml_index(options: dict[str, Any] | None = None) -> int:
    """The NVML index of the GPU a runner uses: ``options["gpu_index"]``, else
    ``$LATENCYLAB_GPU_INDEX`` (set by ``python -m agents.gpu --gpu-index``), else 0."""
    value = (options or {}).get("gpu_index", os.environ.get("LATENCYLAB_GPU_INDEX", 0))
    return int(value)


def gpu_memory_used_mb(index: int = 0) -> float | None:
    """Device memory in use now (NVML; None when unreadable). Cheap enough around a load."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            used = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used
            return round(used / 2**20, 1)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def with_nvml_load_delta(mem: dict[str, Any]) -> dict[str, Any]:
    """A GPU runner's ``gpu_memory`` record plus ``nvml_load_delta_mb``, when both
    ``nvml_used_before_load_mb`` and ``nvml_used_after_load_mb`` were read."""
    before, after = mem.get("nvml_used_before_load_mb"), mem.get("nvml_used_after_load_mb")
    if before is None or after is None:
        return dict(mem)
    return {**mem, "nvml_load_delta_mb": round(after - before, 1)}


def clock_warnings(info: dict[str, Any]) -> list[str]:
    """WARNING lines when the clocks were not locked (boost/throttle can move latency)."""
    if "error" in info:
        return [f"WARNING: GPU clocks unknown, lock state unchecked ({info['error']})"]
    clocks = info.get("clocks") or {}
    sm, app = clocks.get("sm_mhz"), clocks.get("graphics_app_mhz")
    reasons = set(info.get("clocks_event_reasons") or ())
    # nvidia-smi -lgc / -ac show as the "applications clocks setting" (user-defined) reason
    pinned = "applications_clocks_setting" in reasons
    out = []
    if sm is not None and app is not None and sm != app and not pinned:
        out.append(
            f"WARNING: GPU clocks not locked: SM at {sm} MHz, application clock {app} MHz "
            f"(max {clocks.get('sm_max_mhz')}); lock them for stable numbers: "
            "sudo nvidia-smi -lgc <MHz> (and -lmc for memory)"
        )
    elif app is None and not pinned:
        out.append(f"WARNING: no application clock reported (SM at {sm} MHz): lock unchecked")
    moving = sorted(reasons & UNSTABLE_REASONS)
    if moving:
        out.append(f"WARNING: GPU clocks boosted/throttled during the run: {', '.join(moving)}")
    return out


def gpu_environment(index: int = 0) -> dict[str, Any]:
    """``{"gpu": facts, "warnings": [...]}`` for a GPU runner's ``environment()``."""
    info = device_info(index)
    warnings = clock_warnings(info)
    info["clocks_locked"] = not warnings
    return {"gpu": info, "warnings": warnings}
