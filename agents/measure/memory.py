"""Resident-set-size measurement per protocol phase.

Preferred method (Linux, ``"proc_hwm"``): the kernel's own high-water mark ``VmHWM`` in
``/proc/self/status``, reset before each phase by writing ``5`` to
``/proc/self/clear_refs``. The peak of a phase is then exact and costs nothing while the
phase runs. Fallback (``"psutil_sampling"``): a daemon thread samples RSS about every
millisecond; it can miss short spikes and takes the GIL briefly, so it is only used when
the kernel method is unavailable. Last resort (``"none"``): current RSS only, no peaks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MB = 1024.0 * 1024.0


class MemoryProbe(Protocol):
    """Measures current RSS and the peak RSS of a phase (all in MiB)."""

    method: str

    def current_mb(self) -> float | None: ...

    def start_phase(self) -> None: ...

    def end_phase(self) -> float | None: ...

    def close(self) -> None: ...


def _read_status_kb(*keys: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with _STATUS.open() as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in keys:
                out[name] = int(rest.split()[0])  # "VmHWM:   12345 kB"
    return out


class ProcHwmProbe:
    """Exact phase peaks from ``VmHWM`` with a reset through ``clear_refs``."""

    method = "proc_hwm"

    def __init__(self) -> None:
        self._reset()
        vals = _read_status_kb("VmHWM", "VmRSS")
        if "VmHWM" not in vals or "VmRSS" not in vals:
            raise OSError("VmHWM/VmRSS not in /proc/self/status")
        # A kernel that accepts the write but ignores it would leave HWM well above RSS.
        if vals["VmHWM"] > vals["VmRSS"] * 1.05 + 4096:
            raise OSError("writing 5 to /proc/self/clear_refs does not reset VmHWM")

    @staticmethod
    def _reset() -> None:
        with _CLEAR_REFS.open("w") as fh:
            fh.write("5")

    def current_mb(self) -> float | None:
        return _read_status_kb("VmRSS")["VmRSS"] / 1024.0

    def start_phase(self) -> None:
        self._reset()

    def end_phase(self) -> float | None:
        return _read_status_kb("VmHWM")["VmHWM"] / 1024.0

    def close(self) -> None:
        return None


class SamplingProbe:
    """Peak RSS from a background thread sampling ``psutil`` every ``interval_s``."""

    method = "psutil_sampling"

    def __init__(self, interval_s: float = 0.001) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def current_mb(self) -> float | None:
        return self._rss() / _MB

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._rss()
            if rss > self._peak:
                self._peak = rss

    def start_phase(self) -> None:
        self.close()
        self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def end_phase(self) -> float | None:
        self.close()
        return max(self._peak, self._rss()) / _MB

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self._thread = None


class NullProbe:
    """No RSS information available on this platform."""

    method = "none"

    def current_mb(self) -> float | None:
        return None

    def start_phase(self) -> None:
        return None

    def end_phase(self) -> float | None:
        return None

    def close(self) -> None:
        return None


def make_probe(prefer: str | None = None) -> MemoryProbe:
    """Best available probe; ``prefer`` ("proc_hwm" | "psutil_sampling" | "none") forces one."""
    candidates: list[Callable[[], MemoryProbe]] = [ProcHwmProbe, SamplingProbe, NullProbe]
    if prefer is not None:
        candidates = [c for c in candidates if getattr(c, "method", None) == prefer]
    for cls in candidates:
        try:
            return cls()
        except (OSError, ImportError, ValueError, KeyError):
            continue
    return NullProbe()


def memory_summary(
    baseline: float | None,
    peaks: dict[str, float | None],
    after_import: float | None = None,
) -> dict[str, float]:
    """The ``MeasureResult.memory`` dict from a baseline and per-phase peaks (MiB).

    ``peaks`` keys are phase names (``load``, ``warmup``, ``steady``); the result has
    ``baseline_rss_mb`` (before the runtime is imported), ``runtime_rss_mb`` (once it is:
    ``load_delta_mb - (runtime_rss_mb - baseline_rss_mb)`` is then the model's own share),
    ``<phase>_peak_rss_mb``, ``peak_rss_mb`` (max of all) and ``load_delta_mb`` /
    ``steady_delta_mb`` (peak over baseline). Unknown values are omitted.
    """
    out: dict[str, float] = {}
    if baseline is not None:
        out["baseline_rss_mb"] = round(baseline, 3)
    if after_import is not None:
        out["runtime_rss_mb"] = round(after_import, 3)
    known = [v for v in peaks.values() if v is not None]
    for phase, peak in peaks.items():
        if peak is None:
            continue
        out[f"{phase}_peak_rss_mb"] = round(peak, 3)
        if baseline is not None and phase in ("load", "steady"):
            out[f"{phase}_delta_mb"] = round(peak - baseline, 3)
    if known or baseline is not None:
        out["peak_rss_mb"] = round(max([*known, *([baseline] if baseline is not None else [])]), 3)
    return out
