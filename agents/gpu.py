"""The NVIDIA GPU host launcher: register one GPU of this host (facts from ``agents.nvml``),
measure on it, build TensorRT engines here too (see docs/devices.md)::

    python -m agents.gpu --server URL --token-file agent.token [--gpu-index 0]
"""

from __future__ import annotations

import argparse
import os
import socket
from functools import partial
from pathlib import Path
from typing import Any

from agents import agent as agent_loop
from agents.agent import JobHandler
from agents.capabilities import capabilities
from agents.config import AgentSettings
from agents.converter import convert_job, detect_targets
from agents.nvml import device_info


def describe_gpu_host(
    index: int = 0, extra_attributes: dict[str, str] | None = None
) -> dict[str, Any]:
    """Registration body: class ``gpu``, runtimes (+ ``convert:tensorrt``), GPU attributes."""
    body = capabilities("gpu", {})
    info = device_info(index)
    attrs = {
        "gpu": info.get("name"),
        "compute_capability": info.get("compute_capability"),
        "driver": info.get("driver"),
        "cuda": info.get("cuda_version"),
        "gpu_memory_mb": info.get("memory_total_mb"),
        "gpu_index": index,
    }
    body["attributes"].update({k: v for k, v in attrs.items() if v is not None})
    body["attributes"].update(extra_attributes or {})
    body["runtimes"].update(detect_targets(("tensorrt",)))
    body["info"]["gpu"] = info
    return body


def add_agent_args(p: argparse.ArgumentParser) -> None:
    """The options every device-class launcher shares (see ``agents.config.AgentSettings``)."""
    p.add_argument("--server", help="coordinator URL (or LATENCYLAB_AGENT_SERVER)")
    p.add_argument("--token-file", type=Path, help="agent token file (or LATENCYLAB_AGENT_TOKEN)")
    p.add_argument("--name", help="device name (default: <hostname>-<class>)")
    p.add_argument("--data-dir", type=Path, help="artifact cache + scratch (default .latencylab)")


def agent_settings(args: argparse.Namespace, device_class: str) -> AgentSettings:
    given = {k: getattr(args, k) for k in ("server", "token_file", "name") if getattr(args, k)}
    data = args.data_dir or Path(f".latencylab/{device_class}")
    given.setdefault("name", f"{socket.gethostname()}-{device_class}")
    settings = AgentSettings(
        **given, device_class=device_class, cache_dir=data / "cache", work_dir=data / "work"
    )
    settings.resolved_token()  # fail now with the hint, not after registering
    return settings


def tensorrt_handlers(runtimes: dict[str, str]) -> dict[str, JobHandler]:
    """``convert`` jobs are handled here when this host can build TensorRT engines."""
    return {"convert": convert_job} if "convert:tensorrt" in runtimes else {}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m agents.gpu", description="NVIDIA GPU agent")
    add_agent_args(p)
    p.add_argument("--gpu-index", type=int, default=0, help="NVML index of the GPU to serve")
    args = p.parse_args(argv)
    settings = agent_settings(args, "gpu")
    # NVML numbers GPUs physically; CUDA (in the measuring subprocess) sees only this one.
    os.environ["LATENCYLAB_GPU_INDEX"] = str(args.gpu_index)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(args.gpu_index))
    body = describe_gpu_host(args.gpu_index, settings.attributes)
    describe = partial(describe_gpu_host, args.gpu_index, settings.attributes)
    handlers = tensorrt_handlers(body["runtimes"])
    agent_loop.run_agent(agent_loop.Agent(settings, describe=describe, handlers=handlers))


if __name__ == "__main__":
    main()
