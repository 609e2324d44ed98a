"""The Android host: one process serves every phone attached over adb, one device each.

It polls ``adb devices -l``; each ready phone gets its own :class:`agents.agent.Agent`
(own thread, own registration ``<model>-<serial>``, class ``phone``, runtimes ``tflite``
and, with an ``executor_runner`` configured, ``executorch``,
attributes ``soc model android abi serial``) measuring with
:class:`agents.android.measure.PhoneMeasurer`. A newly attached phone is picked up on the
next poll; a removed one has its Agent stopped (a job it was running fails with "phone X
disconnected during the run"; the other phones carry on).

Running it on a real host (Linux or macOS with Android platform-tools)::

    # phones: USB debugging on, this computer's key accepted ("adb devices" says device)
    export LATENCYLAB_ANDROID_BENCHMARK_MODEL=~/android_aarch64_benchmark_model
    python -m agents.android.host --server https://latencylab.example.com \\
        --token-file ~/.latencylab/agent.token [--adb /opt/platform-tools/adb] \\
        [--cpu-mask f0] [--cooldown-s 30]

then target ``class:phone``, ``soc:SM8475`` or one phone by name (``SM-F721B-R3CT...``).
The benchmark binary is pushed to ``/data/local/tmp`` once per phone and run under
``taskset`` (big cores by default). Keep phones on a fixed charge level, screen off,
and out of battery saver; the thermal state before and after each run is recorded.

iPhones are not done. They would take a macOS host with Xcode: ``xcrun devicectl list
devices`` to discover phones, a small signed CoreML benchmark app installed with
``xcrun devicectl device install app`` that loads a ``.mlpackage`` and times
``MLModel.prediction`` (per compute unit), launched with ``xcrun devicectl device process
launch`` and its JSON result copied back with ``xcrun devicectl device copy from``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.agent import Agent
from agents.android.adb import Adb, AdbError
from agents.android.config import AndroidSettings
from agents.android.measure import PhoneMeasurer
from agents.api import Fatal
from agents.config import AgentSettings

log = logging.getLogger("latencylab.android")


@dataclass
class PhoneWorker:
    serial: str
    name: str
    agent: Agent
    thread: threading.Thread
    removed: bool = False


class AndroidHost:
    """Discovery loop + one Agent per ready phone."""

    def __init__(self, android: AndroidSettings, agent: AgentSettings) -> None:
        self.android, self.base = android, agent
        self.adb = Adb(android.adb, android.adb_timeout_s)
        self.stop = threading.Event()
        self.workers: dict[str, PhoneWorker] = {}
        self._warned: set[tuple[str, str]] = set()
        self._adb_error = ""

    def scan(self) -> None:
        """One discovery round: start Agents for new phones, stop those of removed ones."""
        try:
            devices = self.adb.devices()
        except AdbError as exc:
            if str(exc) != self._adb_error:  # once per distinct problem, not every poll
                log.warning("cannot list phones: %s", exc)
            self._adb_error = str(exc)
            return
        self._adb_error = ""
        ready = {d.serial for d in devices if d.ready}
        for d in devices:
            if not d.ready and (d.serial, d.state) not in self._warned:
                self._warned.add((d.serial, d.state))
                log.warning(
                    "phone %s is %r, not ready: unlock it and accept the USB debugging prompt",
                    d.serial,
                    d.state,
                )
        for serial, w in list(self.workers.items()):
            if not w.thread.is_alive():
                del self.workers[serial]
            elif serial not in ready and not w.removed:
                log.info("phone %s (%s) removed: stopping its agent", serial, w.name)
                w.removed = True
                w.agent.stop.set()
        for serial in sorted(ready - self.workers.keys()):
            try:
                self._start(serial)
            except (AdbError, ValueError) as exc:
                log.warning("phone %s: cannot read it yet (%s); retrying", serial, exc)

    def _start(self, serial: str) -> None:
        measurer = PhoneMeasurer(self.adb, serial, self.android)
        body = measurer.phone.registration()
        name = measurer.phone.name()
        settings = self.base.model_copy(
            update={"name": name, "device_class": "phone", "work_dir": self.base.work_dir / name}
        )
        agent = Agent(settings, measure=measurer, describe=lambda: body)
        thread = threading.Thread(
            target=self._serve, args=(agent, serial), name=f"phone-{serial}", daemon=True
        )
        self.workers[serial] = PhoneWorker(serial, name, agent, thread)
        log.info(
            "phone %s attached: serving it as device %s (%s)", serial, name, body["attributes"]
        )
        thread.start()

    def _serve(self, agent: Agent, serial: str) -> None:
        try:
            agent.run()
        except Fatal:  # the coordinator refused it for good; the agent logged why
            log.error("phone %s: agent stopped", serial)
        except Exception:
            log.exception("phone %s: agent crashed; it restarts on the next poll", serial)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.scan()
                self.stop.wait(self.android.poll_interval_s)
        finally:
            self.shutdown()

    def shutdown(self, timeout_s: float = 15.0) -> None:
        for w in self.workers.values():
            w.agent.stop.set()
        for w in self.workers.values():
            w.thread.join(timeout_s)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m agents.android.host", description=__doc__.split("\n")[0]
    )
    p.add_argument("--server", help="coordinator URL (or LATENCYLAB_AGENT_SERVER)")
    p.add_argument("--token", help="agent token (or LATENCYLAB_AGENT_TOKEN)")
    p.add_argument("--token-file", type=Path, help="read the agent token from this file")
    p.add_argument(
        "--data-dir", type=Path, default=Path(".latencylab/android"), help="cache + work"
    )
    p.add_argument("--adb", help="adb executable (or LATENCYLAB_ADB)")
    p.add_argument("--benchmark-model", type=Path, help="Android benchmark_model binary to push")
    p.add_argument("--benchmark-model-version", help="version label of that binary")
    p.add_argument("--executor-runner", type=Path, help="ExecuTorch executor_runner binary to push")
    p.add_argument("--cpu-mask", help="taskset mask, e.g. f0, or 'all' (default: big cores)")
    p.add_argument("--cooldown-s", type=float, help="fixed cool-down before each pass")
    p.add_argument("--poll-interval-s", type=float, help="seconds between 'adb devices' polls")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)  # fmt: skip


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s android-host %(threadName)s %(levelname)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = AgentSettings(
        **_given(server=args.server, token=args.token, token_file=args.token_file),
        cache_dir=args.data_dir / "cache",
        work_dir=args.data_dir / "work",
    )
    agent.resolved_token()  # fail now, not once per phone
    android = AndroidSettings(
        **_given(
            adb=args.adb, benchmark_model=args.benchmark_model,
            executor_runner=args.executor_runner,
            benchmark_model_version=args.benchmark_model_version, cpu_mask=args.cpu_mask,
            cooldown_s=args.cooldown_s, poll_interval_s=args.poll_interval_s,
        )
    )  # fmt: skip
    host = AndroidHost(android, agent)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping", signum)
        host.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("serving the phones of %s (adb: %s)", agent.server, android.adb)
    host.run()


if __name__ == "__main__":
    main()
