"""NVIDIA Jetson hosts: ``tegrastats`` power/RAM/GPU-load during the steady state, nvpmodel.

:class:`JetsonMeasurer` wraps :func:`agents.measure.run_isolated`: it starts ``tegrastats
--interval N`` before the measuring subprocess, stops it after, and keeps only the samples
that arrived during the STEADY STATE. The window starts at the worker's ``steady`` progress
event and lasts ``result.steady_duration_s``; each sample is placed by the time its line
arrived (tegrastats runs on a pseudo-terminal, so lines are not block-buffered; the
JetPack 6 timestamp prefix has only 1 s resolution and is not used). Added to the result:
``memory.system_ram_used_{peak,mean}_mb`` (Jetson RAM is shared by CPU and GPU), and in
``environment``: ``power`` {source, mean_mw, peak_mw, min_mw, samples},
``energy_per_inference_mj``, ``gpu_load_pct``, ``temperatures_c``, ``nvpmodel``, ``tegrastats``.

    python -m agents.jetson --server URL --token-file agent.token [--interval-ms 100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.measure import run_isolated
from agents.parsers.nvpmodel import parse_nvpmodel_query
from agents.parsers.tegrastats import (
    TegrastatsSample,
    energy_per_inference_mj,
    parse_tegrastats_line,
    summarize_power,
)
from converters.spawn import Sandbox
from latencylab.schemas import MeasureResult, MeasureSpec

_RELEASE = re.compile(
    r"R(?P<major>\d+) \(release\), REVISION: (?P<revision>[\d.]+)(?:.*BOARD: (?P<board>[^,]+))?"
)
Progress = Callable[[dict[str, Any]], None]


@dataclass
class JetsonSettings:
    tegrastats: str = "tegrastats"
    interval_ms: int = 100
    nvpmodel: str = "nvpmodel"
    rails: list[str] | None = None  # None: the module input rail (see parsers.tegrastats)
    root: Path = Path("/")  # where /proc/device-tree/model and /etc/nv_tegra_release live
    measure: Callable[..., MeasureResult] = field(default=run_isolated)


class TegrastatsRecorder:
    """``tegrastats --interval N`` on a pseudo-terminal; lines kept with their arrival time."""

    def __init__(self, command: str, interval_ms: int) -> None:
        self.argv = [command, "--interval", str(interval_ms)]
        self.lines: list[tuple[float, str]] = []
        self.error: str | None = None
        self._box: Sandbox | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        try:
            master, slave = pty.openpty()
        except OSError as exc:
            self.error = f"no pseudo-terminal for tegrastats: {exc}"
            return
        try:  # dies with the agent (SIGKILL included), not only on stop()
            self._box = Sandbox(self.argv, stdout=slave, stderr=subprocess.DEVNULL)
        except OSError as exc:
            os.close(master)
            self.error = f"cannot start {self.argv[0]!r}: {exc} (set --tegrastats PATH)"
            return
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        buf = b""
        try:
            while chunk := os.read(fd, 4096):
                buf += chunk
                *done, buf = buf.split(b"\n")
                now = time.monotonic()
                self.lines.extend((now, ln.decode(errors="replace").strip()) for ln in done)
        except OSError:  # EIO once the child has closed the terminal
            pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        status = None
        if self._box is not None:
            status = self._box.wait(0)
            if status is None:  # still sampling: SIGTERM, then whatever is left is killed
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._box.pid, signal.SIGTERM)
                self._box.wait(5)
            self._box.close()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if status not in (0, None):  # it ended before we stopped it
            self.error = self.error or f"{self.argv[0]} exited with {status}"


def query_nvpmodel(command: str = "nvpmodel") -> dict[str, Any]:
    """``nvpmodel -q`` parsed: mode name/id, errors (e.g. not root), or ``{"error": ...}``."""
    try:
        out = subprocess.run([command, "-q"], capture_output=True, text=True, timeout=10)
        status = parse_nvpmodel_query(out.stdout + out.stderr)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"error": f"nvpmodel -q: {exc}"}
    return {"mode_name": status.mode_name, "mode_id": status.mode_id,
            "errors": status.errors, "warnings": status.warnings}  # fmt: skip


def steady_window(
    phases: list[tuple[float, str]], steady_duration_s: float | None
) -> tuple[float, float] | None:
    """(start, end) monotonic times of the steady state from timed phase events."""
    steady = [t for t, p in phases if p == "steady"]
    if not steady:
        return None
    start = steady[0]
    later = [t for t, p in phases if t > start and p != "steady"]
    end = start + steady_duration_s if steady_duration_s else (later[0] if later else steady[-1])
    return start, end


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": round(statistics.fmean(values), 3), "peak": max(values)}


def summarize_steady(
    samples: list[TegrastatsSample], result: MeasureResult, rails: list[str] | None
) -> tuple[dict[str, float], dict[str, Any]]:
    """(memory additions, environment additions) from the steady-state samples."""
    memory: dict[str, float] = {}
    env: dict[str, Any] = {}
    if not samples:
        return memory, env
    ram = [float(s.ram_used_mb) for s in samples]
    memory["system_ram_used_peak_mb"] = max(ram)
    memory["system_ram_used_mean_mb"] = round(statistics.fmean(ram), 1)
    env["gpu_load_pct"] = _stats([s.gpu_pct for s in samples if s.gpu_pct is not None])
    temps: dict[str, list[float]] = {}
    for s in samples:
        for name, value in s.temperatures_c.items():
            if value is not None:
                temps.setdefault(name, []).append(value)
    env["temperatures_c"] = {name: _stats(v) for name, v in temps.items()}
    try:
        power = summarize_power(samples, rails)
    except ValueError as exc:
        env["power"] = {"error": str(exc)}
        return memory, env
    env["power"] = {"source": power.source, "mean_mw": round(power.mean_mw, 1),
                    "peak_mw": power.peak_mw, "min_mw": power.min_mw, "samples": power.samples}  # fmt: skip
    if result.runs and result.steady_duration_s:
        mj = energy_per_inference_mj(samples, result.runs, result.steady_duration_s, rails)
        env["energy_per_inference_mj"] = round(mj, 6)  # mean mW x steady s / runs
    return memory, env


class JetsonMeasurer:
    """A :class:`agents.agent.Measurer` that records tegrastats around each measurement."""

    def __init__(self, settings: JetsonSettings | None = None) -> None:
        self.settings = settings or JetsonSettings()

    def __call__(
        self,
        spec: MeasureSpec,
        *,
        workdir: Path,
        on_progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> MeasureResult:
        s = self.settings
        nvpmodel = query_nvpmodel(s.nvpmodel)
        phases: list[tuple[float, str]] = []

        def progress(event: dict[str, Any]) -> None:
            phases.append((time.monotonic(), str(event.get("phase", ""))))
            if on_progress is not None:
                on_progress(event)

        recorder = TegrastatsRecorder(s.tegrastats, s.interval_ms)
        recorder.start()
        try:
            result = s.measure(spec, workdir=workdir, on_progress=progress, cancel=cancel)
        finally:
            recorder.stop()
        window = steady_window(phases, result.steady_duration_s)
        samples: list[TegrastatsSample] = []
        errors: list[str] = []
        for arrived, line in recorder.lines:
            if not line or window is None or not window[0] <= arrived <= window[1]:
                continue
            try:
                samples.append(parse_tegrastats_line(line))
            except ValueError as exc:
                errors.append(str(exc))
        memory, env = summarize_steady(samples, result, s.rails)
        result.memory.update(memory)
        result.environment.update(env)
        result.environment["nvpmodel"] = nvpmodel
        result.environment["tegrastats"] = {
            "command": " ".join(recorder.argv), "interval_ms": s.interval_ms,
            "lines": len(recorder.lines), "steady_samples": len(samples),
            "parse_errors": errors[:5], "error": recorder.error,
            "window_s": round(window[1] - window[0], 3) if window else None,
            "sample_timing": "line arrival time (monotonic), window from the steady phase event",
            "numbers": "power/RAM/temperatures are as tegrastats printed them",
        }  # fmt: skip
        if window is not None and not samples and result.status == "succeeded":
            result.environment["tegrastats"]["note"] = (
                "no tegrastats sample fell in the steady state: lower --interval-ms or raise "
                "settings.min_duration_s"
            )
        return result


def jetson_soc(root: Path = Path("/")) -> dict[str, str]:
    """``soc`` (device-tree model) and ``l4t`` (from /etc/nv_tegra_release) when readable."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        out["soc"] = (root / "proc/device-tree/model").read_bytes().rstrip(b"\0\n").decode()
    with contextlib.suppress(OSError, IndexError):
        # "# R36 (release), REVISION: 4.0, GCID: 3...6, BOARD: generic, EABI: aarch64, DATE: ..."
        first = (root / "etc/nv_tegra_release").read_text().splitlines()[0]
        if m := _RELEASE.search(first):
            out["l4t"] = f"{m['major']}.{m['revision']}"
            if m["board"] and m["board"] != "generic":
                out.setdefault("soc", m["board"])
    return out


def describe_jetson(
    settings: JetsonSettings | None = None, extra_attributes: dict[str, str] | None = None
) -> dict[str, Any]:
    """Registration body: class ``jetson``, runtimes (+ ``convert:tensorrt``), nvpmodel, soc."""
    from agents.capabilities import capabilities
    from agents.converter import detect_targets

    s = settings or JetsonSettings()
    body = capabilities("jetson", {})
    nvp = query_nvpmodel(s.nvpmodel)
    attrs: dict[str, Any] = dict(jetson_soc(s.root))
    if "mode_name" in nvp:
        attrs["nvpmodel"] = nvp["mode_name"]
    body["attributes"].update({**attrs, **(extra_attributes or {})})
    body["runtimes"].update(detect_targets(("tensorrt",)))
    body["info"]["nvpmodel"] = nvp
    return body


def main(argv: list[str] | None = None) -> None:
    from functools import partial

    from agents.agent import Agent, run_agent
    from agents.gpu import add_agent_args, agent_settings, tensorrt_handlers

    p = argparse.ArgumentParser(prog="python -m agents.jetson", description="Jetson agent")
    add_agent_args(p)
    p.add_argument("--tegrastats", default="tegrastats", help="tegrastats executable")
    p.add_argument("--interval-ms", type=int, default=100, help="tegrastats sample interval")
    p.add_argument("--nvpmodel", default="nvpmodel", help="nvpmodel executable")
    args = p.parse_args(argv)
    settings = agent_settings(args, "jetson")
    js = JetsonSettings(args.tegrastats, args.interval_ms, args.nvpmodel)
    describe = partial(describe_jetson, js, settings.attributes)
    handlers = tensorrt_handlers(describe()["runtimes"])
    run_agent(Agent(settings, measure=JetsonMeasurer(js), describe=describe, handlers=handlers))


if __name__ == "__main__":
    main()
