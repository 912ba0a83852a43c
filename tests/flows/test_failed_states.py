"""A run that leaves work undone ends Failed in Prefect, after publishing its artifact.

Real parts: the sample export in a folder (plus a file CleverTap never writes), DuckDB files, a
Segment-compatible server on 127.0.0.1 that answers 500, a port on 127.0.0.1 that refuses
connections, and Prefect's test server, whose flow run states and artifacts are read back.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.states import State

from ctsync.jobs.store import ExportStore
from flows.build import build_audiences
from flows.load import load_clevertap_exports, run_all_due, run_one_export
from flows.pipeline import clevertap_engage_pipeline
from flows.sync import sync_audiences
from tests.flows.conftest import END, write_settings
from tests.servers.segment import SegmentServer

WRITE_KEY_ENV = "CTSYNC_TEST_SEGMENT_WRITE_KEY"


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def segment_at(url: str) -> dict[str, object]:
    """A Segment-compatible destination at ``url`` that gives up at once (no retries, no backoff)."""
    return {
        "type": "segment",
        "base_url": url,
        "write_key_env": WRITE_KEY_ENV,
        "max_attempts": 1,
        "retry_budget_seconds": 0,
        "timeout_seconds": 5,
    }


def artifact_rows(state: State[Any], kind: str = "table") -> dict[str, Any]:
    """The data of each artifact of ``kind`` the flow run published, by key (table rows are parsed)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)]), type=ArtifactFilterType(any_=[kind])
            )
        )
    return {
        artifact.key: json.loads(artifact.data) if isinstance(artifact.data, str) and kind == "table" else artifact.data
        for artifact in artifacts
    }


def artifact_counts(state: State[Any]) -> dict[str, Any]:
    """The counts of the table artifact of counts the flow run published (one a run)."""
    [rows] = [rows for rows in artifact_rows(state).values() if rows and "count" in rows[0]]
    return {row["count"]: row["value"] for row in rows}


def flow_run_id(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def steps(state: State[Any]) -> dict[str, str]:
    """The pipeline's subflow runs: flow name -> final state type."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id(state)]))
        )
        return {client.read_flow(run.flow_id).name: run.state.type.value for run in children if run.state}


@pytest.fixture
def no_retry_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries happen as configured, without their minutes of waiting."""
    for io_task in (run_one_export, run_all_due):
        monkeypatch.setattr(io_task, "retry_delay_seconds", [0, 0, 0])


@pytest.fixture
def bad_export(tmp_path: Path, sample_export: Path) -> Path:
    """The sample export plus a CSV file, which is not a CleverTap export: it is refused as unsupported."""
    folder = tmp_path / "export"
    shutil.copytree(sample_export, folder)
    (folder / "events.csv").write_text("eventName,ts\nApp Launched,20261120120000\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> tuple[Path, Path]:
    """A loaded and built warehouse, and settings whose ``down`` destination refuses connections."""
    folder = tmp_path_factory.mktemp("built")
    config = write_settings(
        folder, sample_export, destinations={"down": segment_at(f"http://127.0.0.1:{closed_port()}")}
    )
    warehouse = folder / "warehouse.duckdb"
    load_clevertap_exports(config=str(config), warehouse=str(warehouse))
    build_audiences(as_of=END, warehouse=str(warehouse))
    return config, warehouse


def test_a_sync_to_a_destination_that_is_down_ends_failed_after_its_artifact(
    built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, warehouse = built
    monkeypatch.setenv(WRITE_KEY_ENV, "test-write-key")
    state = sync_audiences("down", warehouse=str(warehouse), config=str(config), return_state=True)
    assert state.is_failed()
    counts = artifact_counts(state)
    changes = counts["entered"] + counts["traits changed"]
    assert changes > 0 and counts["sent"] == 0 and counts["pending"] == changes
    assert "sync to down incomplete" in (state.message or "") and f"still pending {changes:,}" in (state.message or "")


def test_a_dry_run_that_sends_nothing_completes(built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    config, warehouse = built
    monkeypatch.setenv(WRITE_KEY_ENV, "test-write-key")
    state = sync_audiences("down", dry_run=True, warehouse=str(warehouse), config=str(config), return_state=True)
    assert state.is_completed()


def test_a_load_with_an_unsupported_file_ends_failed_after_its_artifact_and_is_not_retried(
    tmp_path: Path, bad_export: Path, no_retry_delays: None
) -> None:
    config = write_settings(tmp_path, bad_export)
    warehouse = tmp_path / "warehouse.duckdb"
    state = load_clevertap_exports(export="events", config=str(config), warehouse=str(warehouse), return_state=True)
    assert state.is_failed()
    assert "events.csv" in (state.message or "") and "unsupported" in (state.message or "")
    counts = artifact_counts(state)
    assert counts["exports failed"] == 1 and counts["files not loaded"] == 1 and counts["new rows"] > 0
    assert len(ExportStore.open(str(warehouse)).runs("events")) == 1  # a retry would refuse the file again

    due = load_clevertap_exports(config=str(config), warehouse=str(warehouse), return_state=True)
    assert due.is_failed()  # profiles ran fine; events was not due
    assert artifact_counts(due)["exports run"] == 1


def test_a_build_that_cannot_run_ends_failed(tmp_path: Path) -> None:
    warehouse = tmp_path / "not-a-warehouse.duckdb"
    warehouse.write_bytes(b"this is not a DuckDB file" * 100)
    assert build_audiences(as_of=END, warehouse=str(warehouse), return_state=True).is_failed()


@pytest.fixture
def failing_segment() -> Iterator[SegmentServer]:
    with SegmentServer() as server:
        server.fail_next(1_000_000, 500)
        yield server


def test_a_pipeline_builds_and_syncs_what_loaded_when_a_file_is_bad_and_ends_failed(
    tmp_path: Path,
    bad_export: Path,
    failing_segment: SegmentServer,
    no_retry_delays: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(WRITE_KEY_ENV, failing_segment.write_key)
    config = write_settings(tmp_path, bad_export, destinations={"flaky": segment_at(failing_segment.url)})
    state = clevertap_engage_pipeline(
        destination="flaky",
        as_of=END,
        warehouse=str(tmp_path / "warehouse.duckdb"),
        config=str(config),
        return_state=True,
    )
    assert state.is_failed()
    assert steps(state) == {
        "load-clevertap-exports": "FAILED",
        "build-audiences": "COMPLETED",
        "sync-audiences": "FAILED",
    }
    assert failing_segment.requests  # the sync sent what was built from the files that did load
    assert "load:" in (state.message or "") and "sync:" in (state.message or "")


def test_a_pipeline_whose_warehouse_cannot_be_written_stops_after_the_load(
    tmp_path: Path, sample_export: Path, no_retry_delays: None
) -> None:
    config = write_settings(tmp_path, sample_export)
    warehouse = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(warehouse)!r}); print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = clevertap_engage_pipeline(
            destination="jsonl", as_of=END, warehouse=str(warehouse), config=str(config), return_state=True
        )
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed()
    assert steps(state) == {"load-clevertap-exports": "FAILED"}  # no build, no sync on a warehouse in trouble
    assert "build and sync did not run" in (state.message or "")
    assert not (tmp_path / "identify.jsonl").exists()
