"""Settings from the environment (``CTSYNC_*``), in one place."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Region = Literal["us", "eu"]


class Settings(BaseSettings):
    """``CTSYNC_WAREHOUSE``, ``CTSYNC_WORKSPACE_REGION``, ``CTSYNC_CONFIG``."""

    model_config = SettingsConfigDict(env_prefix="CTSYNC_", extra="ignore")

    warehouse: str = Field(
        default="warehouse.duckdb",
        description="DuckDB file path, duckdb:/// URL, or postgresql:// URL.",
    )
    workspace_region: Region = Field(
        default="us", description="Region of the workspace the data belongs to (us or eu)."
    )
    config: str = Field(default="ctsync.yml", description="Project settings file (exports, destinations).")


def load_settings() -> Settings:
    return Settings()
