"""What this host is and which runtimes it can measure with (no heavy imports)."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from agents.measure.environment import cpu_model
from agents.runners import detect_runtimes


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_mb"] = round(psutil.virtual_memory().total / 2**20)
    except ImportError:
        pass
    return info


def capabilities(device_class: str, extra_attributes: dict[str, str]) -> dict[str, Any]:
    """The registration body: class, runtimes with versions, matchable attributes, info."""
    info = host_info()
    attributes: dict[str, Any] = {
        "host": info["hostname"],
        "arch": info["arch"],
        "os": platform.system().lower(),
    }
    attributes.update(extra_attributes)
    return {
        "class": device_class,
        "runtimes": detect_runtimes(),
        "attributes": attributes,
        "info": info,
    }
