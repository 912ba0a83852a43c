"""Each flow end to end on the sample, under Prefect's test server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from ctsync.exports.sample import write_sample_export
from flows.backfill import backfill_clevertap_export
from flows.build import build_audiences
from flows.load import load_clevertap_exports, run_one_export
from flows.pipeline import clevertap_engage_pipeline
from flows.sync import sync_audiences
from tests.flows.conftest import END, write_settings


def scalar(warehouse: Path, sql: str) -> object:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()[0][0]
    finally:
        con.close()


def event_lines(folder: Path) -> int:
    import gzip

    total = 0
    for path in folder.iterdir():
        for line in gzip.decompress(path.read_bytes()).splitlines():
            if line.startswith(b"{") and b'"eventName"' in line:
                total += 1
    return total


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("project")
    return write_settings(folder, sample_export), folder / "warehouse.duckdb"


def test_load_flow_loads_an_export_and_then_only_when_due(project: tuple[Path, Path], sample_export: Path) -> None:
    config, warehouse = project
    counts = load_clevertap_exports(export="events", config=str(config), warehouse=str(warehouse))
    assert counts["exports run"] == 1
    assert (
        counts["new rows"]
        == event_lines(sample_export)
        == scalar(warehouse, "select count(*) from clevertap_prod.tracks")
    )
    due = load_clevertap_exports(config=str(config), warehouse=str(warehouse))
    assert due["exports run"] == 1  # only profiles was due; events ran a moment ago
    assert scalar(warehouse, "select count(*) from clevertap_prod.users") > 0


def test_build_flow_computes_memberships(project: tuple[Path, Path]) -> None:
    _, warehouse = project
    counts = build_audiences(as_of=END, warehouse=str(warehouse)).counts
    assert counts.get("model success", 0) > 0 and not any("error" in key or "fail" in key for key in counts)
    assert scalar(warehouse, "select count(*) from engage.engage_audience_memberships") > 0


def test_sync_flow_sends_changes_then_nothing(project: tuple[Path, Path]) -> None:
    config, warehouse = project
    first = sync_audiences("jsonl", warehouse=str(warehouse), config=str(config)).counts()
    members = scalar(warehouse, "select count(*) from engage.engage_audience_memberships")
    traits = scalar(warehouse, "select count(*) from engage.engage_computed_traits")
    assert first["entered"] == members and first["traits changed"] == traits
    assert first["sent"] == members + traits
    lines = (config.parent / "identify.jsonl").read_text().splitlines()
    assert len(lines) == first["sent"] and json.loads(lines[0])["type"] == "identify"
    again = sync_audiences("jsonl", warehouse=str(warehouse), config=str(config)).counts()
    assert again["sent"] == 0 and again["entered"] == 0


def test_pipeline_flow_runs_load_build_sync(tmp_path: Path, sample_export: Path) -> None:
    config = write_settings(tmp_path, sample_export)
    warehouse = tmp_path / "pipeline.duckdb"
    result = clevertap_engage_pipeline(destination="jsonl", as_of=END, warehouse=str(warehouse), config=str(config))
    assert result["load"]["exports run"] == 2
    assert result["sync"]["sent"] == len((tmp_path / "identify.jsonl").read_text().splitlines()) > 0
    assert result["sync"]["rejected"] == 0


def test_backfill_over_61_days_is_refused_and_a_valid_one_loads(tmp_path: Path) -> None:
    # A backfill only reaches 60 days back from today: this test's export ends two days ago, whenever it runs.
    today = date.today()
    recent = datetime.combine(today - timedelta(days=2), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    export = tmp_path / "export"
    write_sample_export(export, events=2000, users=150, seed=21, end=recent, timezone="Asia/Kolkata", days=10)
    config = write_settings(tmp_path, export)
    warehouse = tmp_path / "backfill.duckdb"
    with pytest.raises(Exception, match="60 days"):
        backfill_clevertap_export("events", today - timedelta(days=61), today, str(config), str(warehouse))
    start, end = recent.date() - timedelta(days=3), recent.date()
    counts = backfill_clevertap_export("events", start, end, str(config), str(warehouse))
    assert counts["new rows"] > 0 and counts["outside the range"] > 0
    days = scalar(
        warehouse, "select count(distinct cast(timezone('Asia/Kolkata', timestamp) as date)) from clevertap_prod.tracks"
    )
    assert days == 4


def test_a_failing_io_task_is_retried(tmp_path: Path, sample_export: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse is held by another writer for a few seconds: the load task fails, retries, succeeds."""
    config = write_settings(tmp_path, sample_export)
    warehouse = tmp_path / "busy.duckdb"
    duckdb.connect(str(warehouse)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(warehouse)!r}); print('held', flush=True); time.sleep(4)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    monkeypatch.setattr(run_one_export, "retry_delay_seconds", [3, 3, 3])
    started = time.monotonic()
    counts = load_clevertap_exports(export="events", config=str(config), warehouse=str(warehouse))
    holder.wait()
    assert counts["new rows"] > 0
    assert time.monotonic() - started >= 3  # it had to wait for a retry


def test_backfill_flow_reads_a_relative_location_from_the_settings_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment runs the backfill from the worker's folder, not the project's: the location is the project's."""
    project = tmp_path / "project"
    now = datetime.now(UTC)
    write_sample_export(project / "exports", events=400, users=30, end=now, days=4, seed=3, profiles=False)
    export = {
        "name": "events",
        "nickname": "CleverTap_Prod",
        "location": "exports",
        "data_type": "all_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    (project / "ctsync.yml").write_text(yaml.safe_dump({"exports": [export]}), encoding="utf-8")
    worker = tmp_path / "worker"
    worker.mkdir()
    monkeypatch.chdir(worker)
    counts = backfill_clevertap_export(
        "events", now.date() - timedelta(days=4), now.date(), str(project / "ctsync.yml"), str(tmp_path / "b.duckdb")
    )
    assert counts["files loaded"] > 0 and counts["files not loaded"] == 0
    assert (
        counts["new rows"]
        == event_lines(project / "exports")
        == scalar(tmp_path / "b.duckdb", "select count(*) from clevertap_prod.tracks")
    )
