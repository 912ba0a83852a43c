"""Backfills load an export's files for a range of days, reading its location exactly as its runs do."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from ctsync.errors import CtsyncError
from ctsync.exports.sample import write_sample_export
from ctsync.jobs.backfill import run_backfill
from ctsync.jobs.runner import run_export

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def events_per_day(folder: Path) -> dict[date, int]:
    """Events in the export files by their local day (``ts`` is the project's wall-clock time)."""
    days: dict[date, int] = {}
    for path in folder.iterdir():
        for line in gzip.decompress(path.read_bytes()).decode().splitlines():
            if line.startswith("{") and '"eventName"' in line:
                ts = str(json.loads(line)["ts"])
                day = date(int(ts[:4]), int(ts[4:6]), int(ts[6:8]))
                days[day] = days.get(day, 0) + 1
    return days


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder whose settings file names its export folder relatively (``exports/events``)."""
    folder = tmp_path / "project"
    write_sample_export(folder / "exports" / "events", events=600, users=40, end=END, days=6, seed=5, profiles=False)
    settings = {
        "exports": [
            {
                "name": "events",
                "nickname": "CleverTap_Prod",
                "location": "exports/events",
                "data_type": "all_events",
                "frequency": {"recurring": {"every_hours": 6}},
            }
        ]
    }
    (folder / "ctsync.yml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return folder


def tracks(warehouse: Path) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return int(con.execute("select count(*) from clevertap_prod.tracks").fetchall()[0][0])
    finally:
        con.close()


def test_a_backfill_reads_a_relative_location_from_the_settings_files_folder(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ctsync runs from another folder than the project's
    start, end = END.date() - timedelta(days=2), END.date()
    result = run_backfill(
        "events",
        start,
        end,
        config=project / "ctsync.yml",
        warehouse=str(tmp_path / "backfill.duckdb"),
        workspace_region="us",
        now=END,
    )
    assert result.error is None
    expected = sum(
        count for day, count in events_per_day(project / "exports" / "events").items() if start <= day <= end
    )
    assert result.summary.total("rows_inserted") == expected == tracks(tmp_path / "backfill.duckdb") > 0
    assert not list(elsewhere.iterdir())  # nothing was looked for, or written, in the working directory


def test_a_backfill_loads_what_a_run_of_the_export_loads_for_those_days(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same job, the same files: a run over every day and a backfill over every day load the same rows."""
    monkeypatch.chdir(tmp_path)
    config = project / "ctsync.yml"
    days = events_per_day(project / "exports" / "events")
    run = run_export("events", config=config, warehouse=str(tmp_path / "run.duckdb"), workspace_region="us")
    backfill = run_backfill(
        "events",
        min(days),
        max(days),
        config=config,
        warehouse=str(tmp_path / "backfill.duckdb"),
        workspace_region="us",
        now=END,
    )
    assert run.ok and backfill.error is None
    assert backfill.summary.count("loaded") == run.counts.files_loaded
    assert tracks(tmp_path / "backfill.duckdb") == tracks(tmp_path / "run.duckdb") == sum(days.values())


def test_a_backfill_of_a_missing_location_names_the_folder_it_looked_in(project: Path, tmp_path: Path) -> None:
    (project / "exports" / "events").rename(project / "exports" / "moved")
    with pytest.raises(CtsyncError, match=re.escape(str(project / "exports" / "events"))):
        run_backfill(
            "events",
            END.date(),
            END.date(),
            config=project / "ctsync.yml",
            warehouse=str(tmp_path / "backfill.duckdb"),
            workspace_region="us",
            now=END,
        )
