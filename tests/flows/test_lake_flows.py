"""The flows into a lake (a ``lake`` parameter or ``CTSYNC_LAKE``), and builds refusing a lake's state database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ctsync.build import build_models
from ctsync.errors import CtsyncError
from flows.backfill import backfill_clevertap_export
from flows.load import load_clevertap_exports
from flows.pipeline import clevertap_engage_pipeline
from tests.flows.conftest import END, write_settings
from tests.lake.conftest import SCHEMA, assert_lake_equals_warehouse, lake_files


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> Path:
    """Both exports of the settings file loaded by the flow into a DuckDB warehouse, as a lake load must give."""
    folder = tmp_path_factory.mktemp("reference")
    config = write_settings(folder, sample_export)
    warehouse = folder / "warehouse.duckdb"
    for export in ("events", "profiles"):
        load_clevertap_exports(export=export, config=str(config), warehouse=str(warehouse))
    return warehouse


def test_the_load_flow_loads_into_a_lake_and_a_rerun_adds_nothing(
    tmp_path: Path, sample_export: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, lake = write_settings(tmp_path, sample_export), tmp_path / "state.duckdb", str(tmp_path / "lake")
    first = load_clevertap_exports(export="events", config=str(config), warehouse=str(state), lake=lake)
    assert first["new rows"] > 0 and first["exports failed"] == 0
    monkeypatch.setenv("CTSYNC_LAKE", lake)  # the setting, as a deployment would have it
    load_clevertap_exports(export="profiles", config=str(config), warehouse=str(state))
    assert_lake_equals_warehouse(lake, str(state), str(reference))
    files = lake_files(lake)
    again = load_clevertap_exports(export="events", config=str(config), warehouse=str(state))
    assert again["new rows"] == 0 and again["exports failed"] == 0
    assert lake_files(lake) == files
    with pytest.raises(CtsyncError, match="state database of a lake"):
        build_models(warehouse=str(state))


def test_the_backfill_flow_loads_into_a_lake(tmp_path: Path, sample_export: Path) -> None:
    config, state, lake = write_settings(tmp_path, sample_export), tmp_path / "state.duckdb", str(tmp_path / "lake")
    counts = backfill_clevertap_export(
        "events", END.date() - timedelta(days=5), END.date(), config=str(config), warehouse=str(state), lake=lake
    )
    assert counts["new rows"] > 0
    assert any(relative.startswith(f"{SCHEMA}/charged/") for relative in lake_files(lake))


def test_the_pipeline_loads_into_the_lake_and_its_build_refuses_the_state_database(
    tmp_path: Path, sample_export: Path
) -> None:
    config, state, lake = write_settings(tmp_path, sample_export), tmp_path / "state.duckdb", str(tmp_path / "lake")
    state_of_run = clevertap_engage_pipeline(
        destination="jsonl", as_of=END, warehouse=str(state), config=str(config), lake=lake, return_state=True
    )
    assert state_of_run.is_failed()
    assert "state database of a lake" in str(state_of_run.message) + str(state_of_run.result(raise_on_failure=False))
    assert any(relative.startswith(f"{SCHEMA}/charged/") for relative in lake_files(lake))
    assert not (tmp_path / "identify.jsonl").exists()  # nothing synced from an empty build
