"""Coordinator settings: one pydantic-settings class, read through ``get_settings()``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
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
    # An upload is checked in a sandboxed process (docs/conversions.md): its limits.
    inspect_memory_mb: int = Field(
        4096, ge=256, description="Address-space limit of an upload's check (ONNX parse, checker)"
    )
    inspect_timeout_s: float = Field(
        180.0, gt=0, description="An upload's check is killed after this long (422)"
    )
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
    # Where artifacts live (docs/configuration.md, "Object storage").
    artifacts_url: str | None = Field(
        None,
        description="s3://bucket/prefix for S3-compatible object storage; default: the "
        "directory data_dir/artifacts",
    )
    s3_endpoint_url: str | None = Field(
        None, description="The S3 API endpoint (MinIO: http://minio:9000); default: AWS"
    )
    s3_public_endpoint_url: str | None = Field(
        None, description="The endpoint presigned URLs name, when agents reach it elsewhere"
    )
    s3_region: str = Field("us-east-1", description="The bucket's region")
    s3_access_key_id: str | None = Field(None, description="default: boto3's own lookup")
    s3_secret_access_key: SecretStr | None = Field(None, description="default: boto3's lookup")
    s3_addressing_style: Literal["path", "virtual", "auto"] = Field(
        "path", description="path for MinIO and most S3-compatible servers"
    )
    s3_presign_expiry_s: int = Field(
        900, ge=1, le=7 * 86400, description="How long an agent's presigned URL stays valid"
    )
    # Sized for a fleet (docs/configuration.md, "Concurrency"): 64-256 agents per process.
    workers: int = Field(1, ge=1, le=64, description="Coordinator processes (uvicorn workers)")
    threads: int = Field(
        48, ge=4, le=1024, description="Threads per process for blocking request work"
    )
    db_pool_size: int = Field(16, ge=1, description="Database connections kept per process")
    db_max_overflow: int = Field(
        32, ge=0, description="Extra connections per process under load (closed when idle)"
    )
    db_pool_timeout_s: float = Field(
        5.0, gt=0, description="Wait this long for a free connection, then answer 503"
    )
    db_lock_timeout_s: float = Field(
        10.0, gt=0, description="Wait this long for a lock (SQLite's write lock), then 503"
    )
    db_statement_timeout_s: float = Field(
        60.0, gt=0, description="PostgreSQL statement_timeout: a statement running longer fails"
    )
    retry_after_s: int = Field(
        2, ge=1, description="Retry-After of a 503 when the database is saturated"
    )
    lease_wait_max_s: float = Field(
        30.0, ge=0, description="Longest long-poll a lease may ask for (?wait_s=)"
    )
    lease_recheck_s: float = Field(
        1.0,
        gt=0,
        description="Long-polls re-check this often for a job they were not woken for "
        "(on PostgreSQL other replicas' jobs wake them through LISTEN/NOTIFY)",
    )

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

    @field_validator("artifacts_url")
    @classmethod
    def _artifacts_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset (or set empty): the local directory
        if urlsplit(value).scheme != "s3" or not urlsplit(value).netloc:
            raise ValueError(f"must be s3://bucket[/prefix] (or unset: local disk), got {value!r}")
        return value

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
