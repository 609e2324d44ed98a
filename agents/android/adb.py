"""A small ``adb`` wrapper: list phones, getprop, push, shell; every call with a timeout.

Each call is a fresh ``adb`` subprocess in its own process group, so a timeout or a
cancel kills it (and anything it started) without touching other phones' calls; it is a
``converters.spawn.Sandbox`` (without a watchdog: adb's own server daemonizes into a session
of its own), so it also dies with the agent, SIGKILL included (PDEATHSIG).
Errors name the serial and say what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agents.parsers.adb import AdbDevice, parse_adb_devices, parse_getprop, parse_getprop_reply
from converters.spawn import Sandbox

__all__ = ["Adb", "AdbError", "AdbTimeout", "Cancelled", "PhoneGone", "ShellResult"]

# What adb prints when the phone is no longer there (unplugged, rebooting, offline).
_GONE = re.compile(
    r"device '[^']*' not found|device not found|device offline|no devices/emulators found"
    r"|error: closed|device still authorizing|device unauthorized",
    re.IGNORECASE,
)


class AdbError(RuntimeError):
    """An adb call failed; ``serial`` names the phone (None for ``adb devices``)."""

    def __init__(self, message: str, serial: str | None = None) -> None:
        super().__init__(message)
        self.serial = serial


class AdbTimeout(AdbError):
    pass


class PhoneGone(AdbError):
    """The phone disappeared (adb says it is not found / offline)."""


class Cancelled(AdbError):
    pass


@dataclass(frozen=True)
class ShellResult:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def output(self) -> str:
        """stdout and stderr together (benchmark_model logs to stderr)."""
        return self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr


class Adb:
    """``adb`` at ``exe``; ``timeout_s`` is the default timeout of one call."""

    def __init__(self, exe: str = "adb", timeout_s: float = 30.0) -> None:
        self.exe = exe
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ plumbing
    def run(
        self,
        args: Sequence[str],
        *,
        serial: str | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ShellResult:
        """Run ``adb [-s SERIAL] ARGS``; returns whatever it printed, whatever its status.

        Raises :class:`AdbTimeout` past the timeout, :class:`Cancelled` when ``cancel``
        is set, :class:`AdbError` when adb itself cannot be started.
        """
        argv = [self.exe, *(["-s", serial] if serial else []), *args]
        timeout = self.timeout_s if timeout_s is None else timeout_s
        start = time.monotonic()
        try:
            box = Sandbox(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, watchdog=False)
        except OSError as exc:
            raise AdbError(
                f"cannot run adb ({self.exe!r}): {exc}; install Android platform-tools or "
                "set LATENCYLAB_ADB to the adb executable",
                serial,
            ) from exc
        with box:
            proc = box.proc
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - start
                    if cancel is not None and cancel.is_set():
                        box.kill_group()
                        proc.communicate()
                        raise Cancelled(
                            f"adb {shlex.join(args)} on {serial}: cancelled", serial
                        ) from None
                    if elapsed > timeout:
                        box.kill_group()
                        proc.communicate()
                        where = f" on phone {serial}" if serial else ""
                        raise AdbTimeout(
                            f"adb {shlex.join(args)}{where} did not finish within {timeout:g}s",
                            serial,
                        ) from None
        return ShellResult(
            proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - start,
        )

    def check(
        self,
        args: Sequence[str],
        *,
        serial: str | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ShellResult:
        """Like :meth:`run` but a non-zero status raises (:class:`PhoneGone` if it vanished)."""
        res = self.run(args, serial=serial, timeout_s=timeout_s, cancel=cancel)
        if res.returncode != 0:
            text = (res.stderr.strip() or res.stdout.strip()).splitlines()
            detail = text[-1] if text else f"exit status {res.returncode}"
            if serial and _GONE.search(res.stderr + res.stdout):
                raise PhoneGone(f"phone {serial} is not connected ({detail})", serial)
            raise AdbError(f"adb {shlex.join(args)} on phone {serial} failed: {detail}", serial)
        return res

    # ------------------------------------------------------------------ commands
    def devices(self) -> list[AdbDevice]:
        """``adb devices -l``: every attached phone, in whatever state."""
        res = self.run(["devices", "-l"])
        if res.returncode != 0:
            raise AdbError(f"'adb devices -l' failed: {res.stderr.strip() or res.stdout.strip()}")
        return parse_adb_devices(res.stdout)

    def state(self, serial: str) -> str | None:
        """The phone's state (``device``, ``offline``, ...) or None if it is not listed."""
        for dev in self.devices():
            if dev.serial == serial:
                return dev.state
        return None

    def getprop(self, serial: str) -> dict[str, str]:
        """The phone's whole ``getprop`` dump."""
        return parse_getprop(self.check(["shell", "getprop"], serial=serial).stdout)

    def getprop_one(self, serial: str, key: str) -> str | None:
        return parse_getprop_reply(self.check(["shell", "getprop", key], serial=serial).stdout)

    def push(
        self,
        serial: str,
        src: str | os.PathLike[str],
        dst: str,
        *,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.check(["push", os.fspath(src), dst], serial=serial, timeout_s=timeout_s, cancel=cancel)

    def pull(
        self,
        serial: str,
        src: str,
        dst: str | os.PathLike[str],
        *,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.check(["pull", src, os.fspath(dst)], serial=serial, timeout_s=timeout_s, cancel=cancel)

    def shell(
        self,
        serial: str,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        check: bool = True,
    ) -> ShellResult:
        """``adb -s SERIAL shell COMMAND``; a string goes to the phone's shell as is."""
        args = ["shell", command] if isinstance(command, str) else ["shell", *command]
        if check:
            return self.check(args, serial=serial, timeout_s=timeout_s, cancel=cancel)
        return self.run(args, serial=serial, timeout_s=timeout_s, cancel=cancel)

    def is_gone(self, serial: str, result: ShellResult | None = None) -> bool:
        """Did the phone vanish? (adb's own words in ``result``, else ask ``adb devices``.)"""
        if result is not None and _GONE.search(result.stderr + result.stdout):
            return True
        try:
            return self.state(serial) != "device"
        except AdbError:
            return True
