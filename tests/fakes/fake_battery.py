"""The stand-in phone's battery, for ``tests/fakes/adb``: ``dumpsys battery`` and a fuel gauge.

A phone whose config has a ``"battery"`` profile (see ``tests/fakes/batteries.json``, which
cites the real formats) gets:

* ``/sys/class/power_supply/battery/{current_now,voltage_now,status}`` in its fake file system,
  rewritten by :func:`refresh` from a **scripted profile**: the idle draw, or the load draw
  while a ``benchmark_model``/``executor_runner`` runs (``set_load``, called by the stand-in
  around the tool), in the vendor's unit and sign, published once per ``update_s`` like a
  real gauge (the value is latched per update, shared by every reader through a cache file);
* charging physics: on a USB cable (``plugged``) the battery charges (status ``Charging``, the
  current flows in) unless input is suspended; ``dumpsys battery unplug`` only freezes the
  framework's view of the charger, as AOSP's ``BatteryService.unplugBattery`` does -- it does
  not stop the charging -- while ``dumpsys battery suspend_input`` does (debuggable builds
  only; elsewhere AOSP throws a SecurityException, printed, exit status 0 as ``dumpsys``
  returns); ``dumpsys battery reset`` undoes both;
* ``dumpsys battery`` printed from a verbatim template with the live values filled in.

Readers that sample continuously (a ``while`` loop over the sysfs files) are run by
:func:`run_streaming`: output is passed on line by line while the gauge keeps publishing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PROFILES = Path(__file__).with_name("batteries.json")
BATTERY_DIR = "sys/class/power_supply/battery"


def profile(phone: dict[str, Any]) -> dict[str, Any] | None:
    battery = phone.get("battery")
    return battery if isinstance(battery, dict) else None


def _home(cfg: dict[str, Any], phone: dict[str, Any]) -> Path:
    home = Path(cfg["root"]) / phone["serial"]
    home.mkdir(parents=True, exist_ok=True)
    return home


def _write(path: Path, text: str) -> None:
    """Atomic, so a concurrent reader never sees a half-written value."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    tmp.replace(path)


def state(cfg: dict[str, Any], phone: dict[str, Any]) -> dict[str, bool]:
    path = _home(cfg, phone) / "battery-state.json"
    base = {"unplugged": False, "input_suspended": False}
    return {**base, **json.loads(path.read_text())} if path.exists() else base


def set_state(cfg: dict[str, Any], phone: dict[str, Any], **values: bool) -> None:
    _write(_home(cfg, phone) / "battery-state.json", json.dumps({**state(cfg, phone), **values}))


def set_load(cfg: dict[str, Any], phone: dict[str, Any], on: bool) -> None:
    """The phone's tool starts (``on``) or ends: the gauge's next update shows the load draw."""
    if profile(phone) is None:
        return
    marker = _home(cfg, phone) / "battery-load"
    if on:
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def loaded(cfg: dict[str, Any], phone: dict[str, Any]) -> Iterator[None]:
    """While the phone's tool runs (its exit included, by code or by ``fail``)."""
    set_load(cfg, phone, True)
    try:
        yield
    finally:
        set_load(cfg, phone, False)


def _charging(b: dict[str, Any], st: dict[str, bool]) -> bool:
    return bool(b.get("plugged")) and not st["input_suspended"]


def gauge(cfg: dict[str, Any], phone: dict[str, Any]) -> tuple[int, int, str]:
    """(current_now, voltage_now, status) as the phone's sysfs holds them now."""
    b = profile(phone)
    assert b is not None
    home = _home(cfg, phone)
    tick = int(time.monotonic() / float(b["update_s"]))
    cache = home / "battery-gauge.json"
    if cache.exists():
        held = json.loads(cache.read_text())
        if held["tick"] == tick:
            return held["current"], held["voltage"], held["status"]
    loaded = (home / "battery-load").exists()
    draw_ma = float(b["load_ma"] if loaded else b["idle_ma"])
    mv = float(b["load_mv"] if loaded else b["idle_mv"])
    jitter = tick % 3 - 1  # -1, 0, +1 mA: every update is a new value
    if _charging(b, state(cfg, phone)):
        out_ma, status = -(float(b["charge_ma"]) - draw_ma) + jitter, "Charging"
    else:
        out_ma, status = draw_ma + jitter, "Discharging"
    scale = 1000 if b["current_unit"] == "uA" else 1
    current = round(int(b["discharge_sign"]) * out_ma * scale)
    voltage = round(mv * 1000) + 100 * jitter
    _write(cache, json.dumps({"tick": tick, "current": current, "voltage": voltage, "status": status}))  # fmt: skip
    return current, voltage, status


def refresh(cfg: dict[str, Any], phone: dict[str, Any], fs: Path) -> None:
    """Publish the gauge's current values into the phone's sysfs files."""
    if profile(phone) is None:
        return
    current, voltage, status = gauge(cfg, phone)
    d = fs / BATTERY_DIR
    d.mkdir(parents=True, exist_ok=True)
    for name, value in (("current_now", current), ("voltage_now", voltage), ("status", status)):
        path = d / name
        text = f"{value}\n"
        if not path.exists() or path.read_text() != text:
            _write(path, text)


def dumpsys(cfg: dict[str, Any], phone: dict[str, Any], args: list[str]) -> int:
    """``dumpsys battery [unplug|reset|suspend_input]``."""
    b = profile(phone)
    if b is None:
        print("Can't find service: battery")
        return 0
    sub = args[0] if args else None
    if sub == "unplug":
        set_state(cfg, phone, unplugged=True)
    elif sub == "reset":
        set_state(cfg, phone, unplugged=False, input_suspended=False)
    elif sub == "suspend_input":
        if b.get("debuggable"):
            set_state(cfg, phone, input_suspended=True)
        else:  # AOSP BatteryService.suspendBatteryInput on a user build; dumpsys exits 0
            print("Exception occurred while executing 'suspend_input':")
            print("java.lang.SecurityException: battery suspend_input is only supported on "
                  "debuggable builds")  # fmt: skip
    elif sub is None:
        print("\n".join(_render(cfg, phone, b)))
    else:
        print(f"Unknown command: {sub}")  # stand-in wording, not emulated further
    return 0


def _render(cfg: dict[str, Any], phone: dict[str, Any], b: dict[str, Any]) -> list[str]:
    st = state(cfg, phone)
    current, voltage, _status = gauge(cfg, phone)
    plugged = b.get("plugged") if not st["unplugged"] else None
    ma = current // 1000 if b["current_unit"] == "uA" else current
    values = {
        "AC powered": str(plugged == "ac").lower(),
        "USB powered": str(plugged == "usb").lower(),
        "status": "2" if _charging(b, st) else "3",
        "voltage": str(voltage // 1000),
        "current now": str(ma),
    }
    template = json.loads(_PROFILES.read_text())["dumpsys"][b.get("dumpsys", "aosp_m")]
    out: list[str] = []
    for line in template:
        key, sep, _ = line.strip().partition(": ")
        if sep and key in values:
            line = f"{line[: line.index(key)]}{key}: {values[key]}"
        out.append(line)
        if line == "Current Battery Service state:" and st["unplugged"]:
            out.append("  (UPDATES STOPPED -- use 'reset' to restart)")
    return out


def run_streaming(cfg: dict[str, Any], phone: dict[str, Any], fs: Path, command: str) -> int:
    """``sh -c command`` (paths already mapped) with its output passed on line by line, the
    gauge publishing meanwhile; an unplugged phone kills it like a tool run."""
    refresh(cfg, phone, fs)
    child = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert child.stdout is not None
    root = str(fs)

    def pump() -> None:
        assert child.stdout is not None
        for raw in child.stdout:
            sys.stdout.write(raw.decode(errors="replace").replace(root, ""))
            sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    gone = phone.get("disconnect_file")
    while child.poll() is None:
        refresh(cfg, phone, fs)
        if isinstance(gone, str) and gone and Path(gone).exists():
            child.kill()
            child.wait()
            sys.stderr.write(f"error: device '{phone['serial']}' not found\n")
            return 1
        time.sleep(0.02)
    reader.join(timeout=5)
    return child.returncode
