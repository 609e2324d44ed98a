"""Coordinator settings: one pydantic-settings class, read through ``get_settings()``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the coordinator reads from its environment (prefix ``LATENCYLAB_``)."""

    model_config = SettingsConfigDict(env_prefix="LATENCYLAB_", extra="ignore")

    data_dir: Path = Field(
        Path(".latencylab"), description="Artifacts, SQLite file, tokens", validate_default=True
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file under data_dir"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_mb: float = Field(512.0, gt=0, description="Largest accepted upload")
    lease_s: float = Field(60.0, gt=0, description="How long a leased job stays with its agent")
    max_attempts: int = Field(3, ge=1, description="Leases a job may lose before it fails")
    offline_after_s: float = Field(30.0, gt=0, description="A device unseen this long is offline")
    reaper_interval_s: float = Field(5.0, gt=0, description="How often expired leases are swept")
    gc_interval_s: float = Field(
        3600.0, ge=0, description="How often unneeded artifacts are collected; 0: never"
    )
    gc_grace_s: float = Field(
        3600.0, ge=0, description="Artifacts stored or used this recently are never collected"
    )
    write_admin_token: bool = Field(True, description="Create ./<data_dir>/admin.token at start")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Resolved once, here: no worker or subprocess depends on the caller's cwd."""
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'latencylab.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
