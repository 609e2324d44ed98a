"""SDK/CLI settings (prefix ``LATENCYLAB_``): where the coordinator is and which token to use."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENCYLAB_", extra="ignore")

    server: str | None = Field(None, description="Coordinator URL; default http://127.0.0.1:PORT")
    port: int = 8000
    token: str | None = Field(None, description="API token; default: DATA_DIR/admin.token")
    data_dir: Path = Path(".latencylab")

    @property
    def resolved_server(self) -> str:
        return (self.server or f"http://127.0.0.1:{self.port}").rstrip("/")

    def resolved_token(self) -> str | None:
        if self.token:
            return self.token
        path = self.data_dir / "admin.token"
        return path.read_text().strip() if path.is_file() else None


@lru_cache
def get_client_settings() -> ClientSettings:
    return ClientSettings()
