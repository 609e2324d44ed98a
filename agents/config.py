"""Agent settings: one pydantic-settings class (prefix ``LATENCYLAB_AGENT_``)."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from latencylab.runtime_options import DelegateLibrary, HostTools


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LATENCYLAB_AGENT_", extra="ignore", populate_by_name=True
    )

    server: str = Field("http://127.0.0.1:8000", description="Coordinator base URL")
    token: str | None = Field(None, description="API token with scope 'agent' (or admin)")
    token_file: Path | None = Field(None, description="Read the token from this file instead")
    name: str = Field(default_factory=lambda: f"{socket.gethostname()}-cpu")
    device_class: str = Field("cpu", description="cpu | gpu | jetson | phone | mac")
    attributes: dict[str, str] = Field(default_factory=dict, description="Extra key:value tags")
    cache_dir: Path = Field(
        Path(".latencylab/agent-cache"), description="Artifacts by sha256", validate_default=True
    )
    work_dir: Path = Field(
        Path(".latencylab/agent-work"), description="Per-job scratch space", validate_default=True
    )
    poll_interval_s: float = Field(
        1.0, gt=0, description="Wait between empty lease attempts that came back at once"
    )
    lease_wait_s: float = Field(
        20.0, ge=0, le=600, description="Long-poll a lease this long (0: poll every interval)"
    )
    heartbeat_interval_s: float = Field(5.0, gt=0)
    report_retries: int = Field(8, ge=0, description="Retries of a result report (idempotent)")
    once: bool = Field(False, description="Exit after one job (for scripts)")
    convert_timeout_s: float = Field(900, gt=0, description="Kill a conversion after this long")
    convert_memory_mb: int = Field(8192, gt=0, description="Address-space limit of a conversion")

    delegates: dict[str, DelegateLibrary] = Field(
        default_factory=dict,
        description="Delegates this host offers, by name: "
        '{"gpu": {"library": "/opt/tflite/libtensorflowlite_gpu_delegate.so"}, '
        '"qnn": {"library": "libQnnTFLiteDelegate.so", "options": {"backend_type": "htp"}}}. '
        "Callers name a delegate (options.delegate); only the operator gives paths",
    )
    tflite_benchmark_model: Path | None = Field(
        None,
        validation_alias=AliasChoices(
            "LATENCYLAB_AGENT_TFLITE_BENCHMARK_MODEL", "LATENCYLAB_TFLITE_BENCHMARK_MODEL"
        ),
        description="The C++ TFLite benchmark_model tool, for per-operator profiles",
    )

    def host_tools(self) -> HostTools:
        """The operator's delegates and tools, as handed to each measurement."""
        tool = self.tflite_benchmark_model
        return HostTools(
            delegates=dict(self.delegates), tflite_benchmark_model=str(tool) if tool else None
        )

    @field_validator("cache_dir", "work_dir", "token_file", "tflite_benchmark_model")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Resolved once, here: subprocesses run in their own work directories."""
        return value.expanduser().resolve() if value is not None else None

    def resolved_token(self) -> str:
        if self.token:
            return self.token
        if self.token_file and self.token_file.is_file():
            return self.token_file.read_text().strip()
        raise SystemExit(
            "no agent token: pass --token (or --token-file); create one with "
            "'latencylab token create --scope agent'"
        )
