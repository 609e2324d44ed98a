"""LatencyLab SDK: light imports only (httpx + pydantic)."""

from latencylab.client import Client, LatencyLabError

__version__ = "0.1.0"
__all__ = ["Client", "LatencyLabError", "__version__"]
