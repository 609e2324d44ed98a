"""The dummy runtime's options model (tests/dummy_runtime.py). A declaration's options module
is imported while ``latencylab.runtimes`` builds its registry, so it imports only
``latencylab.runtime_options`` (pydantic), never the registry or a runner."""

from __future__ import annotations

from pydantic import Field

from latencylab.runtime_options import RuntimeOptions


class DummyOptions(RuntimeOptions):
    size: int | None = Field(None, ge=1, le=512, description="Side of the square matrices")
