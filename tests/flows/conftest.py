"""Flows run against Prefect's test server (a temporary SQLite-backed API), once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from ctsync.exports.sample import write_sample_export

END = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_sample_export(folder, events=4000, users=300, seed=21, end=END, timezone="Asia/Kolkata", days=40)
    return folder


def write_settings(
    folder: Path, export_dir: Path, *, every_hours: int = 6, destinations: dict[str, dict[str, object]] | None = None
) -> Path:
    """A project settings file: the sample as events and profiles exports, a JSON-lines destination and
    ``destinations``."""
    settings = {
        "exports": [
            {
                "name": "events",
                "nickname": "CleverTap_Prod",
                "timezone": "Asia/Kolkata",
                "location": str(export_dir),
                "data_type": "all_events",
                "frequency": {"recurring": {"every_hours": every_hours}},
            },
            {
                "name": "profiles",
                "nickname": "CleverTap_Prod",
                "timezone": "Asia/Kolkata",
                "location": str(export_dir),
                "data_type": "user_profiles",
                "frequency": {"recurring": {"every_hours": 24}},
            },
        ],
        "destinations": {"jsonl": {"type": "jsonl", "path": str(folder / "identify.jsonl")}, **(destinations or {})},
    }
    path = folder / "ctsync.yml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path
