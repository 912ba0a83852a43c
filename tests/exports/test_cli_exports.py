"""``ctsync exports``: the commands a user types, on a real settings file and DuckDB warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from ctsync.cli_exports import exports_app
from ctsync.exports.sample import write_sample_export
from ctsync.jobs.store import ExportStatus, ExportStore


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    write_sample_export(folder, events=300, users=30, days=3, profiles=False)  # ends now
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tmp_path


def entry(name: str, location: Path | str = "/data", **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": name,
        "nickname": "CleverTap_Prod",
        "location": str(location),
        "data_type": "all_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    job.update(overrides)
    return job


def configure(project: Path, *entries: dict[str, Any]) -> None:
    (project / "ctsync.yml").write_text(yaml.safe_dump({"exports": list(entries)}, sort_keys=False))


def cli(project: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    options = ["--config", str(project / "ctsync.yml"), "--warehouse", str(project / "warehouse.duckdb")]
    environment = {"COLUMNS": "200", "CTSYNC_WORKSPACE_REGION": "us", **(env or {})}
    return CliRunner().invoke(exports_app, [*args, *options], env=environment)


def store(project: Path) -> ExportStore:
    return ExportStore.open(str(project / "warehouse.duckdb"))


def test_validate_prints_every_problem(project: Path) -> None:
    configure(
        project,
        entry("fine"),
        entry("daily-events", frequency={"recurring": {"every_hours": 2}}),
        entry("picked", data_type="selected_events", events=["Charged"]),
        entry("fine"),
        entry("wide", frequency={"one_time": {"from": "2026-01-01", "to": "2026-06-30"}}),
    )
    result = cli(project, "validate")
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        "export 'daily-events': frequency: recurring every 2 hours is not allowed; CleverTap recurs every 4 to 24 hours"
        in output
    )
    assert "export 'picked': events: 'Charged' is not a system event" in output
    assert "export 'fine': name is used by exports entries 1 and 4" in output
    assert "export 'wide': frequency: one_time from 2026-01-01 to 2026-06-30 covers 181 days" in output
    assert "4 problem(s)" in output
    assert store(project).exports() == {}  # validate changes nothing


def test_validate_a_good_file(project: Path) -> None:
    configure(project, entry("a"), entry("b", frequency={"one_time": "current_month"}))
    result = cli(project, "validate")
    assert result.exit_code == 0, result.output
    assert "2 export(s), no problems" in result.output
    assert not (project / "warehouse.duckdb").exists()


def test_validate_checks_the_workspace_region_and_the_edit_rules(project: Path) -> None:
    configure(project, entry("a"), entry("once", frequency={"one_time": "current_month"}))
    assert cli(project, "list").exit_code == 0  # registers both
    configure(project, entry("a", data_type="user_profiles"), entry("once", frequency={"one_time": "current_month"}))
    result = cli(project, "validate", env={"CTSYNC_WORKSPACE_REGION": "eu"})
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "export 'a': cannot switch between events and profiles" in output
    assert "export 'once': region us differs from the workspace region eu" in output
    assert store(project).get("a").data_type == "all_events"


def test_list_registers_new_exports_and_shows_them(project: Path) -> None:
    configure(
        project,
        entry("events-6h"),
        entry("people", data_type="user_profiles", frequency={"recurring": {"every_hours": 24}}),
    )
    result = cli(project, "list")
    assert result.exit_code == 0, result.output
    assert "registered new export 'events-6h' (PENDING)" in result.output
    for text in ("events-6h", "people", "user_profiles", "every 24 h", "PENDING", "CleverTap_Prod", "due now"):
        assert text in result.output
    assert "2 export(s) | page 1 of 1 | 20 per page" in result.output
    assert set(store(project).exports()) == {"events-6h", "people"}


def test_list_filters_and_pages(project: Path) -> None:
    jobs = [entry(f"rec-{i:02}") for i in range(17)]
    jobs += [entry(f"prof-{i:02}", data_type="user_profiles") for i in range(5)]
    jobs += [entry(f"once-{i:02}", frequency={"one_time": "current_month"}) for i in range(3)]
    configure(project, *jobs)
    first = cli(project, "list", "--per-page", "10")
    assert first.exit_code == 0, first.output
    assert "25 export(s) | page 1 of 3 | 10 per page" in first.output
    last = cli(project, "list", "--per-page", "10", "--page", "3")
    assert "page 3 of 3" in last.output
    shown = [name for name in (j["name"] for j in jobs) if name in last.output]
    assert len(shown) == 5
    default = cli(project, "list").output  # 20 per page; created together, so by name: once, prof, rec-00..11
    assert "25 export(s) | page 1 of 2 | 20 per page" in default
    assert (default.count("once-"), default.count("prof-"), default.count("rec-")) == (3, 5, 12)
    profiles = cli(project, "list", "--type", "profiles")
    assert "5 export(s) match (of 25) | page 1 of 1" in profiles.output
    assert "rec-00" not in profiles.output
    one_time = cli(project, "list", "--frequency", "one-time")
    assert "3 export(s) match (of 25)" in one_time.output
    assert cli(project, "stop", "rec-03").exit_code == 0
    stopped = cli(project, "list", "--status", "stopped")
    assert "1 export(s) match (of 25)" in stopped.output and "rec-03" in stopped.output
    never_ran = cli(project, "list", "--exported-from", "2020-01-01")
    assert "0 export(s) match (of 25)" in never_ran.output
    assert "no exports match" in never_ran.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--per-page", "15"], "items per page must be 10, 20, 30 or 40"),
        (["--page", "2"], "there is no page 2"),
        (["--status", "paused"], "--status must be PENDING, RUNNING, DONE or STOPPED, not 'paused'"),
        (["--frequency", "daily"], "--frequency must be one-time or recurring, not 'daily'"),
        (["--type", "custom"], "--type 'custom' is not a type"),
        (["--exported-from", "yesterday"], "--exported-from must be a date such as 2026-11-01, not 'yesterday'"),
    ],
)
def test_list_refuses_bad_options(project: Path, args: list[str], message: str) -> None:
    configure(project, entry("a"))
    result = cli(project, "list", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_run_show_and_stop(project: Path, files: Path) -> None:
    configure(project, entry("now", files), entry("once", files, frequency={"one_time": "current_month"}))
    ran = cli(project, "run", "now")
    assert ran.exit_code == 0, ran.output
    output = " ".join(ran.output.split())
    assert "export 'now' (all_events): run succeeded, now PENDING" in output
    assert "lines: 300 read, 300 loaded (300 new), 0 rejected, 0 skipped" in output
    assert "app_launched" in output  # the table of new rows per event table

    shown = cli(project, "show", "now")
    assert shown.exit_code == 0, shown.output
    assert "frequency every 6 h" in " ".join(shown.output.split())
    assert f"location: {files}" in shown.output
    assert "last 1 run(s)" in shown.output and "succeeded" in shown.output

    stopped = cli(project, "stop", "now")
    assert "export 'now' is now STOPPED" in stopped.output
    assert "was already STOPPED" in cli(project, "stop", "now").output
    again = cli(project, "run", "now")
    assert again.exit_code == 2
    assert "'now' is STOPPED and never runs again" in " ".join(again.output.split())
    assert store(project).get("now").status is ExportStatus.STOPPED

    due = cli(project, "run-due")
    assert due.exit_code == 0, due.output
    assert "export 'once' (all_events | days" in " ".join(due.output.split())
    assert "now DONE" in due.output
    assert "no export was due" in cli(project, "run-due").output
    done = cli(project, "stop", "once")
    assert done.exit_code == 2 and "is DONE" in done.output


def test_a_failed_run_exits_with_1(project: Path) -> None:
    configure(project, entry("nowhere", project / "missing"))
    result = cli(project, "run", "nowhere")
    assert result.exit_code == 1
    assert "run failed, now PENDING" in " ".join(result.output.split())
    assert "matches no file" in " ".join(result.output.split())


def test_unknown_export_and_missing_settings_file(project: Path) -> None:
    missing = cli(project, "run", "x")
    assert missing.exit_code == 2
    assert "does not exist; create it with an exports: section" in " ".join(missing.output.split())
    assert cli(project, "list").exit_code == 0  # nothing stored, nothing to list
    configure(project, entry("a"))
    unknown = cli(project, "show", "b")
    assert unknown.exit_code == 2 and "no export named 'b'" in unknown.output
