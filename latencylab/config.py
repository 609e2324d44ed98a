"""SDK/CLI settings (prefix ``LATENCYLAB_``): where the coordinator is and which token to use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TOKEN_FILE = "admin.token"
TokenSource = Literal["argument", "env", "file", "none"]


@dataclass(frozen=True)
class TokenOrigin:
    """Which token a client sends and where it came from (never the secret: its prefix only).

    ``source``: ``argument`` (``Client(token=...)``, the CLI's ``--token``), ``env``
    (``LATENCYLAB_TOKEN``), ``file`` (``DATA_DIR/admin.token``, written by ``make run``) or
    ``none`` (no token found; ``path`` is the file that was looked for)."""

    source: TokenSource
    prefix: str | None = None
    path: Path | None = None

    @classmethod
    def of(cls, token: str, source: TokenSource, path: Path | None = None) -> TokenOrigin:
        return cls(source, token[:8] + "…", path)


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATENCYLAB_", extra="ignore")

    server: str | None = Field(None, description="Coordinator URL; default http://127.0.0.1:PORT")
    port: int = 8000
    token: str | None = Field(None, description="API token; default: DATA_DIR/admin.token")
    data_dir: Path = Path(".latencylab")

    @property
    def resolved_server(self) -> str:
        return (self.server or f"http://127.0.0.1:{self.port}").rstrip("/")

    @property
    def token_file(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def find_token(self, given: str | None = None) -> tuple[str | None, TokenOrigin]:
        """The token to send and its origin: ``given``, else ``LATENCYLAB_TOKEN``, else the
        token file."""
        if given:
            return given, TokenOrigin.of(given, "argument")
        if self.token:
            return self.token, TokenOrigin.of(self.token, "env")
        path = self.token_file
        if path.is_file():
            token = path.read_text().strip()
            if token:
                return token, TokenOrigin.of(token, "file", path.resolve())
        return None, TokenOrigin("none", path=path.resolve())

    def resolved_token(self) -> str | None:
        return self.find_token()[0]


@lru_cache
def get_client_settings() -> ClientSettings:
    return ClientSettings()
