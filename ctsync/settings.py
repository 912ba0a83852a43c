"""Settings from the environment (``CTSYNC_*``), in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctsync.errors import CtsyncError

Region = Literal["us", "eu"]


class Settings(BaseSettings):
    """``CTSYNC_WAREHOUSE``, ``CTSYNC_LAKE``, ``CTSYNC_WORKSPACE_REGION``, ``CTSYNC_CONFIG``, ``CTSYNC_PROJECT_DIR``."""

    model_config = SettingsConfigDict(env_prefix="CTSYNC_", extra="ignore")

    warehouse: str = Field(
        default="warehouse.duckdb",
        description="DuckDB file path, duckdb:/// URL, or postgresql:// URL.",
    )
    lake: str | None = Field(
        default=None,
        description="Lake root (a folder or s3://... URL) for ctsync load --lake; the warehouse is then its state.",
    )
    workspace_region: Region = Field(
        default="us", description="Region of the workspace the data belongs to (us or eu)."
    )
    config: str = Field(default="ctsync.yml", description="Project settings file (exports, destinations).")
    project_dir: str | None = Field(
        default=None, description="The project folder (dbt_project.yml, ctsync.yml); default: here or above."
    )

    @model_validator(mode="after")
    def _config_in_project_dir(self) -> Settings:
        if "config" not in self.model_fields_set and self.project_dir:
            self.config = str(Path(self.project_dir) / "ctsync.yml")
        return self

    @field_validator("workspace_region", mode="before")
    @classmethod
    def _lowercase_region(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


def load_settings() -> Settings:
    """The settings; a bad value is a :class:`CtsyncError` naming the variable and what it takes."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "CTSYNC_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{variable}={error.get('input')!s}: {error['msg']}")
        raise CtsyncError("bad setting in the environment: " + "; ".join(problems)) from None
