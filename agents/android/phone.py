"""What one attached phone is: getprop facts, CPU clusters, thermal state, cool-down.

Everything is read over adb with the shared parsers (``agents.parsers.adb`` and
``agents.parsers.thermal``). Thermal reads are best-effort: a phone without
``dumpsys thermalservice`` (Android < 10) is read from sysfs thermal zones alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from agents.android.adb import Adb, AdbError
from agents.android.config import AndroidSettings
from agents.parsers.adb import PhoneInfo, phone_info
from agents.parsers.thermal import millidegrees_to_c, parse_dumpsys_thermalservice

_CPU_FREQS = (
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    'echo "$c $(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)"; done'
)
_ZONES = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    'echo "$z|$(cat $z/type 2>/dev/null)|$(cat $z/temp 2>/dev/null)"; done'
)
_HOT_ZONE = re.compile(r"cpu|gpu|tsens|soc|apc|kryo|cluster|npu|tpu|big|mid|little", re.I)
_HOT_TYPES = {"CPU", "GPU", "NPU", "SKIN"}
_MASK = re.compile(r"^(?:0x)?([0-9a-fA-F]+)$")


def _zone_c(text: str) -> float | None:
    """A thermal_zone temp in C: millidegrees, though some old kernels print degrees."""
    try:
        value = millidegrees_to_c(text)
    except ValueError:
        return None
    if abs(value) < 0.2:  # "38" = 38 C on those kernels, not 0.038 C
        value *= 1000
    return value if -40.0 < value < 150.0 else None


class Phone:
    def __init__(self, adb: Adb, serial: str, settings: AndroidSettings) -> None:
        self.adb, self.serial, self.settings = adb, serial, settings
        self._props: dict[str, str] | None = None
        self._freqs: dict[int, int] | None = None

    # ------------------------------------------------------------ identity
    def props(self) -> dict[str, str]:
        if self._props is None:
            self._props = self.adb.getprop(self.serial)
        return self._props

    def info(self) -> PhoneInfo:
        return phone_info(self.props())

    def name(self) -> str:
        model = self.info().model or "android"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}-{self.serial}")

    def runtimes(self) -> dict[str, str]:
        """Runtime -> version label: TFLite's benchmark_model always, ExecuTorch when the
        operator configured an executor_runner."""
        out = {"tflite": self.settings.benchmark_model_version}
        if self.settings.executor_runner is not None:
            out["executorch"] = self.settings.executor_runner_version
        return out

    def registration(self) -> dict[str, Any]:
        """The Agent's registration body (class, runtimes, attributes, info)."""
        i = self.info()
        freqs = self.cpu_freqs()
        body: dict[str, Any] = {
            "class": "phone",
            "runtimes": self.runtimes(),
            "attributes": {
                "soc": i.soc_model, "model": i.model, "android": i.android_version,
                "abi": i.abi, "serial": self.serial, "os": "android",
            },
            "info": {
                "manufacturer": i.manufacturer, "device": i.device,
                "soc_manufacturer": i.soc_manufacturer, "soc_source": i.soc_source,
                "sdk_level": i.sdk_level, "abis": list(i.abis),
                "logical_cores": len(freqs) or None,
                "cpu_max_freq_khz": [freqs[c] for c in sorted(freqs)],
                "fingerprint": self.props().get("ro.build.fingerprint"),
            },
        }  # fmt: skip
        for key in ("attributes", "info"):  # an unknown fact is left out, not sent as null
            body[key] = {k: v for k, v in body[key].items() if v not in (None, [])}
        return body

    def describe_env(self) -> dict[str, Any]:
        i = self.info()
        return {
            "device_model": i.model, "manufacturer": i.manufacturer, "soc": i.soc_model,
            "soc_source": i.soc_source, "android_version": i.android_version,
            "sdk_level": i.sdk_level, "abi": i.abi,
            "runtime_version": self.settings.benchmark_model_version, "tool": "benchmark_model",
        }  # fmt: skip

    # ------------------------------------------------------------ CPU
    def cpu_freqs(self) -> dict[int, int]:
        """cpu index -> cpuinfo_max_freq (kHz); empty if unreadable."""
        if self._freqs is None:
            freqs: dict[int, int] = {}
            try:
                out = self.adb.shell(self.serial, _CPU_FREQS, check=False).stdout
            except AdbError:
                out = ""
            for m in re.finditer(r"cpu(\d+)\s+(\d+)\s*$", out, re.M):
                freqs[int(m[1])] = int(m[2])
            self._freqs = freqs
        return self._freqs

    def cpu_mask(self, option: Any, threads: int) -> tuple[str | None, str]:
        """(taskset mask or None = all cores, how it was chosen)."""
        wanted = option if option is not None else self.settings.cpu_mask
        if wanted is not None:
            text = str(wanted).strip().lower()
            if text in ("", "all", "none"):
                return None, "all cores (asked)"
            if not (m := _MASK.match(text)):
                raise ValueError(f"cpu_mask {wanted!r} is not a hex mask like 'f0' (or 'all')")
            return m[1], "asked"
        freqs = self.cpu_freqs()
        if len(set(freqs.values())) < 2:
            return None, "all cores (one cluster, or cpufreq unreadable)"
        slowest = min(freqs.values())
        big = sorted(c for c, f in freqs.items() if f > slowest)
        if threads > len(big):
            return None, f"all cores ({threads} threads > {len(big)} big cores)"
        return format(sum(1 << c for c in big), "x"), f"big cores {big} (cpuinfo_max_freq)"

    # ------------------------------------------------------------ thermal
    def thermal(self) -> dict[str, Any]:
        """Thermal snapshot: Android throttling status, temperatures, hottest CPU/SoC value."""
        snap: dict[str, Any] = {}
        hot: list[float] = []
        try:
            dump = parse_dumpsys_thermalservice(
                self.adb.shell(self.serial, "dumpsys thermalservice", check=False).stdout
            )
            snap.update(status=dump.throttling_status, status_name=dump.throttling_status_name)
            snap["temperatures_c"] = {t.name: t.value_c for t in dump.temperatures}
            hot += [t.value_c for t in dump.temperatures if t.type in _HOT_TYPES and t.value_c]
        except ValueError:
            pass  # no thermal service (Android < 10): sysfs only
        zones: dict[str, float] = {}
        for line in self.adb.shell(self.serial, _ZONES, check=False).stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and (c := _zone_c(parts[2])) is not None:
                key = parts[1] or parts[0].rsplit("/", 1)[-1]
                zones[key if key not in zones else f"{key}@{parts[0].rsplit('/', 1)[-1]}"] = c
        if zones:
            snap["zones_c"] = zones
            hot += [c for k, c in zones.items() if _HOT_ZONE.search(k)]
        snap["hottest_c"] = max(hot) if hot else None
        return snap

    def cool_down(
        self,
        options: Mapping[str, Any],
        cancel: threading.Event,
        progress: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Fixed wait, then wait until not throttling and the hottest zone is under the limit."""
        s = self.settings
        fixed = float(options.get("cooldown_s", s.cooldown_s))
        limit = options.get("max_temp_c", s.cooldown_max_temp_c)
        timeout = float(options.get("cooldown_timeout_s", s.cooldown_timeout_s))
        record: dict[str, Any] = {"fixed_s": fixed, "max_temp_c": limit}
        start = time.monotonic()
        if fixed > 0:
            progress({"phase": "cooldown", "wait_s": fixed})
            cancel.wait(fixed)
        if limit is not None:
            while not cancel.is_set():
                snap = self.thermal()
                temp = snap["hottest_c"]
                record.setdefault("start_c", temp)
                record["end_c"] = temp
                if (temp is None or temp < float(limit)) and not snap.get("status"):
                    break
                if time.monotonic() - start > timeout:
                    record["timed_out"] = True
                    break
                progress({"phase": "cooldown", "temp_c": temp, "status": snap.get("status")})
                cancel.wait(s.cooldown_poll_s)
        record["waited_s"] = round(time.monotonic() - start, 3)
        return record
