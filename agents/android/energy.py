"""Energy per inference on a phone, from its battery fuel gauge (coarse, and said so).

Around the steady-state pass of a job (:class:`EnergyMeter`, used by
``agents.android.measure``):

1. probe ``cat DIR/current_now DIR/voltage_now`` (``DIR`` = ``settings.battery_dir``,
   ``/sys/class/power_supply/battery``); unreadable -> ``environment.power.error``, nothing
   else is touched;
2. read ``dumpsys battery`` (plugged state, level), then ``dumpsys battery unplug`` and
   ``dumpsys battery suspend_input``. AOSP's ``BatteryService`` (frameworks/base
   ``services/core/java/com/android/server/BatteryService.java``) shows why both:
   ``unplug`` only freezes the framework's view (chargers reported offline, updates
   stopped) while the hardware keeps charging; ``suspend_input`` really stops USB input
   (``PowerProperties.battery_input_suspended``), on debuggable builds only. ``reset``
   undoes both, and it runs in a ``finally``: after the pass, a failure, a timeout or a cancel;
3. start ONE long-running ``adb shell`` loop on the phone that prints ``current voltage
   status`` every ``settings.energy_interval_s`` (0.2 s). Its reads are shell builtins
   (``read -r c < file``), so each sample costs the phone no fork but the ``sleep``; it is
   pinned (``taskset -p``) to the cores the benchmark does not use. One ``adb shell cat``
   per sample would instead start an adbd service, a shell and ``cat`` on the phone (and an
   adb client here) 5 times a second, on whatever core is free. ``dumpsys battery get
   current_now`` is no way either: with updates stopped by ``unplug`` it prints the frozen
   value. Samples are placed by their arrival time here (like tegrastats in
   ``agents.jetson``); Android < 6 has toolbox ``sleep``, whole seconds only, so there it
   samples once a second;
4. idle baseline: ``settings.energy_baseline_s`` of sampling before the pass (its first third
   is dropped while the gauge settles); then the pass; the steady window is the pass's last
   ``steady_duration_s`` (the timed runs are the last thing the tool does).

Analysis (:func:`analyse`, pure): every sample must say ``Discharging`` (else the battery
was charging, or the phone ran from USB, and energy is refused). Vendors differ: the kernel
ABI (Documentation/ABI/testing/sysfs-class-power) says microamps, negative while
discharging; some phones are positive while discharging (collectd/collectd#3865), Samsung
and some Huawei report milliamps (home-assistant/android#2846, rmanor/currentwidget#54).
With charging suspended the battery discharges, so the sign of the idle reading gives the
convention; its size gives the unit (an awake phone draws well over 10 mA, and no phone 10 A).
Both are recorded (``power.current_convention``; ``settings.battery_current_sign``/``_unit``
override). The gauge publishes a new value only every so often (a fraction of a second to
seconds): its update interval is the median time between changes of the sampled
(current, voltage), and a steady state shorter than ``settings.energy_min_updates`` of them
gets ``power.note`` = "energy not reported: run shorter than N fuel-gauge updates ..." and no
energy. Otherwise: ``power.mean_mw`` = mean steady power minus the idle baseline,
``energy_per_inference_mj`` = that x steady seconds / runs -- the same fields as the Jetson
path, plus ``method``, rates and sample counts.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import shlex
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agents.android.adb import Adb, AdbError, Cancelled
from agents.android.config import AndroidSettings
from agents.android.phone import Phone
from converters.spawn import Sandbox

log = logging.getLogger("latencylab.android")

METHOD = "fuel_gauge:sysfs current_now×voltage_now, baseline-subtracted"  # noqa: RUF001
COARSE = (
    "coarse: the battery fuel gauge measures the whole phone (screen, radios, the sampling "
    "loop) at its own update rate; the idle baseline taken just before is subtracted"
)
NOT_REPORTED = "energy not reported"
_SAMPLE = re.compile(r"^(-?\d+) (-?\d+) ?(.*)$")
_FIELD = re.compile(r"^\s*([^:]+?):\s*(.*?)\s*$")
_HEADER = "Current Battery Service state:"
_MA_BELOW = 10_000  # |idle current| under this is mA: 10 mA is no awake phone, 10 A no phone
_UV_ABOVE = 100_000  # voltage_now above this is uV (a cell is 3-4.5 V), else mV


class NotReported(Exception):
    """Energy cannot be given; the message is the ``power.note`` (starts "energy not reported")."""


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic arrival time here
    current: int  # as the phone printed it
    voltage: int
    status: str


def parse_sample(t: float, line: str) -> Sample | None:
    m = _SAMPLE.match(line.strip())
    return Sample(t, int(m[1]), int(m[2]), m[3].strip()) if m else None


def parse_dumpsys_battery(text: str) -> dict[str, Any]:
    """``dumpsys battery``: its ``key: value`` lines, plus ``updates_stopped`` (an ``unplug``
    or ``set`` is in force) and ``plugged`` (``ac``/``usb``/``wireless``/``dock``/``none``)."""
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != _HEADER:
        raise ValueError(f"not dumpsys battery output: {(lines or [''])[0][:80]!r}")
    fields: dict[str, Any] = {}
    for line in lines[1:]:
        if (m := _FIELD.match(line)) and m[1] not in fields:
            fields[m[1]] = m[2]
    fields["updates_stopped"] = any("UPDATES STOPPED" in ln for ln in lines[1:3])
    kinds = ("AC", "USB", "Wireless", "Dock")
    on = [k.lower() for k in kinds if fields.get(f"{k} powered") == "true"]
    fields["plugged"] = "+".join(on) or "none"
    return fields


@dataclass(frozen=True)
class Convention:
    discharge_sign: int  # multiply the reading by this: discharge current > 0
    current_unit: str  # "uA" or "mA"
    voltage_unit: str  # "uV" or "mV"
    detected_from: str

    def power_mw(self, s: Sample) -> float:
        amps = s.current * self.discharge_sign * (1e-6 if self.current_unit == "uA" else 1e-3)
        volts = s.voltage * (1e-6 if self.voltage_unit == "uV" else 1e-3)
        return amps * volts * 1000.0

    def describe(self) -> dict[str, str]:
        sign = "negative" if self.discharge_sign < 0 else "positive"
        return {"sign": f"{sign} while discharging", "unit": self.current_unit,
                "voltage_unit": self.voltage_unit, "detected_from": self.detected_from}  # fmt: skip


def detect_convention(idle: list[Sample], sign: str = "auto", unit: str = "auto") -> Convention:
    """Sign and unit of ``current_now`` from idle samples taken while discharging."""
    current = statistics.median(s.current for s in idle)
    volts = statistics.median(s.voltage for s in idle)
    if current == 0 and "auto" in (sign, unit):
        raise NotReported(
            f"{NOT_REPORTED}: current_now reads 0 while the battery discharges (the gauge "
            "does not report current)"
        )
    how = []
    if sign == "auto":
        factor = -1 if current < 0 else 1
        how.append(f"sign of the idle median {current:g} while Discharging")
    else:
        factor = -1 if sign == "negative_discharge" else 1
        how.append(f"sign set to {sign}")
    if unit == "auto":
        unit = "mA" if abs(current) < _MA_BELOW else "uA"
        how.append(f"unit from its size (|x| {'<' if unit == 'mA' else '>='} {_MA_BELOW} = {unit})")  # fmt: skip
    else:
        how.append(f"unit set to {unit}")
    return Convention(factor, unit, "uV" if volts > _UV_ABOVE else "mV", "; ".join(how))


def gauge_interval_s(samples: list[Sample]) -> float | None:
    """Median time between changes of the sampled (current, voltage): the gauge's update
    interval (never shorter than the sampling interval, which bounds what can be seen)."""
    changes = [b.t for a, b in itertools.pairwise(samples)
               if (a.current, a.voltage) != (b.current, b.voltage)]  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    return statistics.median(gaps) if gaps else None


def _within(samples: list[Sample], window: tuple[float, float]) -> list[Sample]:
    return [s for s in samples if window[0] <= s.t <= window[1]]


def analyse(
    samples: list[Sample],
    baseline: tuple[float, float],
    steady: tuple[float, float],
    runs: int,
    *,
    min_updates: int,
    sign: str = "auto",
    unit: str = "auto",
    charging_hint: str = "",
) -> dict[str, Any]:
    """``{"power": {...}, "energy_per_inference_mj": x}``, or ``power.note`` saying why not."""
    idle, busy = _within(samples, baseline), _within(samples, steady)
    span = samples[-1].t - samples[0].t if len(samples) > 1 else 0.0
    power: dict[str, Any] = {
        "source": "battery fuel gauge (current_now x voltage_now)",
        "method": METHOD, "coarse": COARSE, "baseline_subtracted": True,
        "samples": len(busy), "baseline_samples": len(idle), "samples_total": len(samples),
        "sample_rate_hz": round((len(samples) - 1) / span, 3) if span > 0 else None,
        "steady_window_s": round(steady[1] - steady[0], 3),
        "baseline_window_s": round(baseline[1] - baseline[0], 3),
        "min_gauge_updates": min_updates,
    }  # fmt: skip
    out: dict[str, Any] = {"power": power}
    try:
        charging = sorted({s.status for s in idle + busy} - {"Discharging", ""})
        if charging:
            raise NotReported(
                f"{NOT_REPORTED}: the battery reported {', '.join(map(repr, charging))} "
                "during the measurement, so it was not powering the phone alone"
                + (f" ({charging_hint})" if charging_hint else "")
            )
        interval = gauge_interval_s(samples)
        if interval is None:
            raise NotReported(
                f"{NOT_REPORTED}: the fuel gauge's reading did not change in {span:.1f} s of "
                "sampling, so its update rate is unknown"
            )
        updates = (steady[1] - steady[0]) / interval
        power.update(gauge_update_interval_s=round(interval, 3), gauge_updates=round(updates, 1))
        if updates < min_updates or not busy:
            need = math.ceil(round(min_updates * interval * 10, 6)) / 10
            raise NotReported(
                f"{NOT_REPORTED}: run shorter than {min_updates} fuel-gauge updates (the steady "
                f"state lasted {steady[1] - steady[0]:.3g} s, {updates:.1f} updates of "
                f"~{interval:.2g} s; raise settings.min_duration_s to at least {need:g} s)"
            )
        if len(idle) < 2:
            raise NotReported(f"{NOT_REPORTED}: {len(idle)} idle baseline samples (need 2)")
        conv = detect_convention(idle, sign, unit)
        power["current_convention"] = conv.describe()
        base = statistics.fmean(conv.power_mw(s) for s in idle)
        net = [conv.power_mw(s) - base for s in busy]
        mean = statistics.fmean(net)
        power.update(mean_mw=round(mean, 1), peak_mw=round(max(net), 1),
                     min_mw=round(min(net), 1), baseline_mw=round(base, 1),
                     gross_mean_mw=round(mean + base, 1))  # fmt: skip
        if mean <= 0:
            raise NotReported(
                f"{NOT_REPORTED}: the steady state drew no more than the idle baseline "
                f"({mean + base:.0f} mW vs {base:.0f} mW)"
            )
        out["energy_per_inference_mj"] = round(mean * (steady[1] - steady[0]) / runs, 6)
    except NotReported as exc:
        power["note"] = str(exc)
    return out


def sampler_command(battery_dir: str, interval: str, max_samples: int, mask: str | None) -> str:
    """The phone-side loop: ``current voltage status`` per line, builtins only but ``sleep``."""
    pin = f"taskset -p {mask} $$ >/dev/null 2>&1; " if mask else ""
    return (
        f"{pin}d={shlex.quote(battery_dir)}; n=0; while [ $n -lt {max_samples} ]; do "
        "read -r c < $d/current_now; read -r v < $d/voltage_now; "
        "read -r s < $d/status 2>/dev/null || s=; "
        f'echo "$c $v $s"; sleep {interval}; n=$((n + 1)); done'
    )


def other_cores(mask: str | None, cores: int) -> str | None:
    """The complement of the benchmark's taskset mask (None: no mask, or nothing left)."""
    if not mask or mask == "all" or cores <= 0:
        return None
    rest = ((1 << cores) - 1) & ~int(mask, 16)
    return format(rest, "x") if rest else None


class BatterySampler:
    """The phone-side loop in one ``adb shell``; lines kept with their arrival time.

    Started and stopped by the measuring thread (its Sandbox dies with that thread, see
    ``converters.spawn``); a reader thread only reads."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lines: list[tuple[float, str]] = []
        self._box: Sandbox | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._box = Sandbox(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, watchdog=False)  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._box is not None and self._box.proc.stdout is not None
        for raw in iter(self._box.proc.stdout.readline, b""):
            self.lines.append((time.monotonic(), raw.decode(errors="replace").strip()))

    def stop(self) -> None:
        if self._box is not None:
            self._box.close()  # the adb client dies; the phone's loop ends on its next write
        if self._reader is not None:
            self._reader.join(timeout=5)


@dataclass
class EnergyRun:
    """One job's sampling: the battery record, the sampler, the windows."""

    settings: AndroidSettings
    record: dict[str, Any] = field(default_factory=dict)
    sampler: BatterySampler | None = None
    baseline: tuple[float, float] | None = None
    steady_pass: tuple[float, float] | None = None
    error: str | None = None
    charging_hint: str = ""

    @contextlib.contextmanager
    def steady(self) -> Iterator[None]:
        """Marks the steady-state pass (its start ends the idle baseline)."""
        start = time.monotonic()
        if self.baseline is not None:
            self.baseline = (self.baseline[0], start)
        try:
            yield
        finally:
            self.steady_pass = (start, time.monotonic())

    def report(self, runs: int | None, steady_s: float | None) -> dict[str, Any]:
        """Environment additions: ``power``, ``energy_per_inference_mj``, ``battery``."""
        if not self.settings.energy:
            return {}
        if self.error is not None:
            return {"power": {"error": self.error, "method": METHOD}, "battery": self.record}
        assert self.sampler is not None and self.baseline and self.steady_pass
        parsed = [parse_sample(t, line) for t, line in self.sampler.lines]
        samples = [s for s in parsed if s is not None]
        self.record["sampler_unparsed_lines"] = [line for (_t, line), s in zip(self.sampler.lines, parsed, strict=True) if s is None][:3]  # fmt: skip
        end = self.steady_pass[1]
        steady = (max(self.steady_pass[0], end - (steady_s or 0.0)), end)
        if not samples or not runs:
            note = f"{NOT_REPORTED}: no battery samples came back from the phone"
            return {"power": {"method": METHOD, "samples": 0, "note": note}, "battery": self.record}  # fmt: skip
        s = self.settings
        out = analyse(samples, self.baseline, steady, runs, min_updates=s.energy_min_updates,
                      sign=s.battery_current_sign, unit=s.battery_current_unit,
                      charging_hint=self.charging_hint)  # fmt: skip
        out["power"]["sample_interval_s"] = self.record.get("sample_interval_s")
        return {**out, "battery": self.record}


class EnergyMeter:
    """Battery sampling around a phone's steady-state pass (see the module docstring)."""

    def __init__(self, adb: Adb, serial: str, phone: Phone, settings: AndroidSettings) -> None:
        self.adb, self.serial, self.phone, self.settings = adb, serial, phone, settings

    def _shell(self, command: str) -> tuple[int, str]:
        res = self.adb.shell(self.serial, command, timeout_s=self.settings.adb_timeout_s, check=False)  # fmt: skip
        return res.returncode, res.output.strip()

    @contextlib.contextmanager
    def session(
        self, cancel: threading.Event, deadline: float, cpu_mask: str | None
    ) -> Iterator[EnergyRun]:
        """Charging suspended, the sampler running and the idle baseline taken; on leaving
        (whatever the reason) the sampler stops and ``dumpsys battery reset`` runs."""
        run = EnergyRun(self.settings)
        if not self.settings.energy:
            yield run
            return
        d = self.settings.battery_dir.rstrip("/")
        run.record["dir"] = d
        code, text = self._shell(f"cat {shlex.quote(d + '/current_now')} {shlex.quote(d + '/voltage_now')}")  # fmt: skip
        if code != 0 or len(text.split()) != 2:
            run.error = (
                f"battery not readable at {d} ({text.splitlines()[-1] if text else f'exit {code}'}); "
                "set LATENCYLAB_ANDROID_BATTERY_DIR to the phone's fuel-gauge directory, or "
                "LATENCYLAB_ANDROID_ENERGY=false"
            )
            yield run
            return
        try:
            with contextlib.suppress(ValueError):
                before = parse_dumpsys_battery(self._shell("dumpsys battery")[1])
                run.record["before"] = {k: before.get(k) for k in ("plugged", "level", "voltage", "status", "updates_stopped")}  # fmt: skip
            run.record["unplug"] = self._control("unplug")
            run.record["suspend_input"] = self._control("suspend_input")
            if run.record["suspend_input"] != "ok":
                run.charging_hint = (
                    "USB charging could not be suspended: 'dumpsys battery suspend_input' needs "
                    "a debuggable build; use adb over Wi-Fi or a cable without power"
                )
            run.sampler = self._sampler(run, deadline, cpu_mask)
            # a few samples at least (Android < 6 samples once a second); the first third settles
            wait = max(self.settings.energy_baseline_s, 4 * run.record["sample_interval_s"])
            run.record["baseline_s"] = wait
            run.sampler.start()
            start = time.monotonic()
            cancel.wait(wait)
            if cancel.is_set():
                raise Cancelled("cancelled during the battery baseline", self.serial)
            run.baseline = (start + wait / 3, time.monotonic())
            yield run
        finally:
            try:
                if run.sampler is not None:
                    run.sampler.stop()
            finally:
                run.record["reset"] = self._reset()

    def _control(self, sub: str) -> str:
        """``dumpsys battery SUB``: "ok" when it printed nothing and exited 0, else what it said."""
        code, text = self._shell(f"dumpsys battery {sub}")
        return (
            "ok"
            if code == 0 and not text
            else (" | ".join(text.splitlines()) or f"exit {code}")[:300]
        )

    def _reset(self) -> str:
        try:
            res = self.adb.run(["shell", "dumpsys battery reset"], serial=self.serial, timeout_s=10)
        except AdbError as exc:
            log.warning("phone %s: dumpsys battery reset failed: %s", self.serial, exc)
            return f"failed: {exc}"
        if res.returncode != 0:
            log.warning("phone %s: dumpsys battery reset: exit %s", self.serial, res.returncode)
            return f"failed: exit {res.returncode} {res.output.strip()[:200]}"
        return "ok"

    def _sampler(self, run: EnergyRun, deadline: float, cpu_mask: str | None) -> BatterySampler:
        s = self.settings
        sdk = self.phone.info().sdk_level
        interval = s.energy_interval_s
        if sdk is not None and sdk < 23:  # toolbox sleep (Android < 6): whole seconds only
            interval = float(max(1, math.ceil(s.energy_interval_s)))
            run.record["sample_interval_note"] = "Android < 6: toolbox sleep takes whole seconds"
        budget = max(s.energy_baseline_s, 4 * interval) + max(1.0, deadline - time.monotonic())
        mask = other_cores(cpu_mask, len(self.phone.cpu_freqs()))
        command = sampler_command(s.battery_dir.rstrip("/"), f"{interval:g}", math.ceil(budget / interval) + 10, mask)  # fmt: skip
        run.record.update(sample_interval_s=interval, sampler_cores=mask or "any", sampler_command=command)  # fmt: skip
        return BatterySampler([self.adb.exe, "-s", self.serial, "shell", command])
