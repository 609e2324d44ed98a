"""What an upload costs the coordinator's memory: a real coordinator subprocess
(``python -m server.serve --no-local-agent``, SQLite), one valid ONNX model of SIZE MiB (one big
initializer) and GARBAGE files of SIZE MiB named ``.onnx`` (random bytes, rejected), each
streamed from disk; the coordinator's VmRSS and VmHWM (``/proc/PID/status``) before and after
each upload.

    python -m bench.upload_memory --size-mib 1024 --garbage 3

Goal (issue 12): growth <= 64 MiB for a 1 GiB upload, accepted or rejected. The model check
runs in a sandboxed process (``server.formats``), never in the coordinator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MiB = 2**20
ROW_FLOATS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _field(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(length)


def write_big_onnx(path: Path, nbytes: int) -> Path:
    """A valid ONNX model (``y = Gather(w, idx)``) whose float32 initializer ``w`` holds about
    ``nbytes``, written in 1 MiB chunks: the graph without ``w`` first, then a second ``graph``
    field holding ``w`` (protobuf merges repeated occurrences of a message field), so the
    model is never in memory here."""
    rows = max(1, nbytes // (ROW_FLOATS * 4))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["w", "idx"], ["y"], axis=0)],
        "big",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, ROW_FLOATS])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[rows, ROW_FLOATS])
    data = rows * ROW_FLOATS * 4
    tensor_head = tensor.SerializeToString() + _field(9, data)  # TensorProto.raw_data = 9
    initializer = _field(5, len(tensor_head) + data)  # GraphProto.initializer = 5
    with path.open("wb") as fh:
        fh.write(model.SerializeToString())
        fh.write(_field(7, len(initializer) + len(tensor_head) + data))  # ModelProto.graph = 7
        fh.write(initializer + tensor_head)
        _write_repeated(fh, b"\0" * MiB, data)
    return path


def write_garbage(path: Path, nbytes: int) -> Path:
    """``nbytes`` of random bytes (one random MiB, repeated)."""
    with path.open("wb") as fh:
        _write_repeated(fh, os.urandom(MiB), nbytes)
    return path


def _write_repeated(fh: Any, block: bytes, nbytes: int) -> None:
    while nbytes > 0:
        n = min(nbytes, len(block))
        fh.write(block[:n])
        nbytes -= n


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


@dataclass
class Coordinator:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def memory(self) -> dict[str, float]:
        return memory_mib(self.proc.pid)

    def upload(self, path: Path, filename: str, timeout_s: float = 600) -> httpx.Response:
        """POST /models with the file streamed from disk."""
        with path.open("rb") as fh, httpx.Client(timeout=timeout_s) as c:
            return c.post(
                f"{self.url}/api/v1/models",
                headers={"Authorization": f"Bearer {self.token}"},
                files={"file": (filename, fh, "application/octet-stream")},
            )


@contextlib.contextmanager
def coordinator(data_dir: Path, env: dict[str, str]) -> Iterator[Coordinator]:
    """``python -m server.serve --no-local-agent`` on a free port with ``env`` added (a
    process of its own: its /proc is the coordinator's alone)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LATENCYLAB_")}
    full_env.update(env, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "server.serve", "--no-local-agent", "--port", str(port),
           "--data-dir", str(data_dir)]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the coordinator exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        token = (data_dir / "admin.token").read_text().strip()
        yield Coordinator(url, token, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ChildPeak:
    """Samples the coordinator's child processes (the sandboxed check) every 50 ms and keeps
    the highest VmHWM seen: what the check itself needed."""

    def __init__(self, pid: int) -> None:
        self.parent = psutil.Process(pid)
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for child in self.parent.children(recursive=True):
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.peak_mib = max(self.peak_mib, memory_mib(child.pid)["VmHWM"])

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measured_upload(coord: Coordinator, path: Path, filename: str) -> dict[str, Any]:
    """One upload, the coordinator's memory before and after it, the check's peak."""
    before = coord.memory()
    started = time.monotonic()
    with ChildPeak(coord.proc.pid) as check:
        r = coord.upload(path, filename)
    after = coord.memory()
    return {
        "file": filename,
        "size_mib": round(path.stat().st_size / MiB, 1),
        "status": r.status_code,
        "detail": r.json().get("detail") if r.status_code >= 400 else None,
        "code": r.json().get("code") if r.status_code >= 400 else None,
        "seconds": round(time.monotonic() - started, 2),
        "rss_before_mib": round(before["VmRSS"], 1),
        "rss_after_mib": round(after["VmRSS"], 1),
        "hwm_before_mib": round(before["VmHWM"], 1),
        "hwm_after_mib": round(after["VmHWM"], 1),
        "check_peak_mib": round(check.peak_mib, 1),
    }


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run(size_mib: int, garbage: int, inspect_memory_mb: int | None, work: Path) -> dict[str, Any]:
    env = {"LATENCYLAB_MAX_UPLOAD_MB": str(size_mib + 64)}
    if inspect_memory_mb is not None:
        env["LATENCYLAB_INSPECT_MEMORY_MB"] = str(inspect_memory_mb)
    small = write_big_onnx(work / "warmup.onnx", MiB)
    big = write_big_onnx(work / "big.onnx", size_mib * MiB)
    junk = write_garbage(work / "garbage.onnx", size_mib * MiB)
    rows = []
    with coordinator(work / "data", env) as coord:
        warm = coord.upload(small, "warmup.onnx")  # the first upload imports what uploads need
        if warm.status_code != 201:
            raise RuntimeError(f"the warm-up upload failed: {warm.text}")
        baseline = coord.memory()
        rows.append(measured_upload(coord, big, "big.onnx"))
        for i in range(garbage):
            rows.append(measured_upload(coord, junk, f"garbage-{i + 1}.onnx"))
        final = coord.memory()
    return {
        "command": " ".join(["python -m bench.upload_memory", *sys.argv[1:]]),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "size_mib": size_mib,
        "baseline_rss_mib": round(baseline["VmRSS"], 1),
        "baseline_hwm_mib": round(baseline["VmHWM"], 1),
        "uploads": rows,
        "final_rss_mib": round(final["VmRSS"], 1),
        "final_hwm_mib": round(final["VmHWM"], 1),
        "rss_growth_mib": round(final["VmRSS"] - baseline["VmRSS"], 1),
        "hwm_growth_mib": round(final["VmHWM"] - baseline["VmHWM"], 1),
        "goal_mib": 64,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each upload")
    ap.add_argument("--garbage", type=int, default=3, help="rejected garbage uploads")
    ap.add_argument("--inspect-memory-mb", type=int, default=None, help="default: the setting's")
    ap.add_argument("--work", type=Path, default=None, help="where the files go (default: tmp)")
    ap.add_argument("--out", type=Path, default=RESULTS / "upload_memory.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        report = run(args.size_mib, args.garbage, args.inspect_memory_mb, Path(tmp))
    for row in report["uploads"]:
        print(
            f"{row['file']:16s} {row['size_mib']:7.1f} MiB  HTTP {row['status']}  "
            f"{row['seconds']:6.1f} s  RSS {row['rss_before_mib']:6.1f} -> "
            f"{row['rss_after_mib']:6.1f} MiB  HWM {row['hwm_before_mib']:6.1f} -> "
            f"{row['hwm_after_mib']:6.1f} MiB  check peak {row['check_peak_mib']:6.1f} MiB",
            flush=True,
        )
    print(
        f"coordinator RSS {report['baseline_rss_mib']} -> {report['final_rss_mib']} MiB "
        f"(growth {report['rss_growth_mib']} MiB), HWM growth {report['hwm_growth_mib']} MiB; "
        f"goal <= {report['goal_mib']} MiB ({report['cpu']})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    grew = max(report["rss_growth_mib"], report["hwm_growth_mib"])
    return 0 if grew <= report["goal_mib"] else 1


if __name__ == "__main__":
    sys.exit(main())
