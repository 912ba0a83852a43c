"""``ctsync sync`` and ``ctsync status`` through typer's CliRunner."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import typer
from typer.testing import CliRunner, Result

from ctsync.cli_sync import EXIT_REFUSED, app, register
from ctsync.engage.summary import ComputationCounts
from tests.engage.conftest import EngageData, segment_entry, sync_environment, users, write_config
from tests.servers.segment import SegmentServer

runner = CliRunner()


def text(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_register_mounts_both_commands() -> None:
    main = typer.Typer()
    register(main)
    assert sorted(command.name or "" for command in main.registered_commands) == ["status", "sync"]


def test_sync_to_a_jsonl_file_from_the_environment_alone(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(1, 2))
    engage.trait("ltv", {("u1", "a1"): 3})
    out = tmp_path / "identify.jsonl"

    result = runner.invoke(
        app,
        ["sync", "--destination", "jsonl", "--warehouse", str(engage.path)],
        env=sync_environment(CTSYNC_JSONL_PATH=str(out)),
    )

    assert result.exit_code == 0, result.output
    assert "2 entered, 0 exited, 1 traits changed" in text(result)
    assert "sent 3, rejected 0, retried 0, failed 0" in text(result)
    assert "retired audiences: 0" in text(result)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["userId"] for line in lines) == ["u1", "u1", "u2"]


def test_sync_a_destination_from_the_settings_file(
    engage: EngageData, tmp_path: Path, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1, 2, 3))
    config = write_config(tmp_path, {"marketing": segment_entry(segment_server)})

    result = runner.invoke(
        app,
        ["sync", "-d", "marketing", "--warehouse", str(engage.path), "--config", str(config)],
        env=sync_environment(),
    )

    assert result.exit_code == 0, result.output
    assert "synced marketing (segment): 3 entered" in text(result)
    assert len(segment_server.messages) == 3
    assert "test-write-key" not in text(result)


def test_dry_run_prints_the_changes_and_sends_nothing(
    engage: EngageData, tmp_path: Path, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    config = write_config(tmp_path, {"marketing": segment_entry(segment_server)})

    result = runner.invoke(
        app,
        ["sync", "-d", "marketing", "--dry-run", "--warehouse", str(engage.path), "--config", str(config)],
        env=sync_environment(),
    )

    assert result.exit_code == 0, result.output
    assert "would send marketing (segment): 1 entered" in text(result)
    assert "audience:vip" in text(result)
    assert "dry run: nothing was sent or stored" in text(result)
    assert segment_server.requests == []


def test_rejections_make_the_exit_status_1_and_are_listed(
    engage: EngageData, tmp_path: Path, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    config = write_config(tmp_path, {"marketing": segment_entry(segment_server)})
    segment_server.fail_next(1, 400, body={"code": "invalid_request", "message": "bad batch"})

    result = runner.invoke(
        app,
        ["sync", "-d", "marketing", "--warehouse", str(engage.path), "--config", str(config)],
        env=sync_environment(),
    )

    assert result.exit_code == 1
    assert "rejected 1" in text(result)
    assert "HTTP 400: bad batch" in text(result)


def test_configuration_errors_are_clear(engage: EngageData, tmp_path: Path) -> None:
    unknown = runner.invoke(
        app, ["sync", "-d", "nowhere", "--warehouse", str(engage.path)], env=sync_environment(), catch_exceptions=False
    )
    assert unknown.exit_code == 2
    assert "no destination named 'nowhere'" in text(unknown)

    missing = runner.invoke(
        app,
        ["sync", "-d", "x", "--warehouse", str(engage.path), "--config", str(tmp_path / "nope.yml")],
        env=sync_environment(),
    )
    assert missing.exit_code == 2
    assert "nope.yml does not exist" in text(missing)

    no_key = runner.invoke(app, ["sync", "-d", "segment", "--warehouse", str(engage.path)], env=sync_environment())
    assert no_key.exit_code == 2
    assert "SEGMENT_WRITE_KEY" in text(no_key)


def test_status_shows_recent_loads_and_sync_runs(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(1, 2))
    con = duckdb.connect(str(engage.path))
    try:
        con.execute("create schema clevertap_prod")
        con.execute(
            "create table clevertap_prod._loads (load_id varchar, file varchar, status varchar, rows_inserted bigint, "
            "rows_rejected bigint, started_at timestamptz, finished_at timestamptz)"
        )
        con.execute(
            "insert into clevertap_prod._loads values ('load-1', 'a.json.gz', 'loaded', 120, 2, now(), now()), "
            "('load-1', 'b.json.gz', 'failed', 0, 0, now(), now())"
        )
    finally:
        con.close()
    env = sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "out.jsonl"))
    assert runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", str(engage.path)], env=env).exit_code == 0

    result = runner.invoke(app, ["status", "--warehouse", str(engage.path)], env=env)

    assert result.exit_code == 0, result.output
    assert "recent loads" in text(result)
    assert "clevertap_prod" in text(result)
    assert "load-1" in text(result)
    assert "120" in text(result)
    assert "recent sync runs" in text(result)
    assert "succeeded" in text(result)


def test_status_on_a_warehouse_without_anything(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()

    result = runner.invoke(app, ["status", "--warehouse", str(path)], env=sync_environment())

    assert result.exit_code == 0, result.output
    assert "no loads yet" in text(result)
    assert "no sync runs yet" in text(result)
    missing = runner.invoke(app, ["status", "--warehouse", str(tmp_path / "nope.duckdb")], env=sync_environment())
    assert missing.exit_code == 2


def _render(parts: list[object], width: int) -> list[str]:
    from rich.console import Console

    out = Console(width=width, record=True, file=io.StringIO())
    for part in parts:
        out.print(part)
    return out.export_text().splitlines()


def test_status_fits_an_80_column_terminal_with_large_counts() -> None:
    from ctsync.cli_sync import status_parts
    from ctsync.status import LoadStatus, RunStatus, StatusReport

    when = datetime(2026, 11, 24, 9, 43, 12, tzinfo=UTC)
    load = LoadStatus("clevertap_prod", "ec95c6ff0a1b4c2d", when, when, 1_094, 1_090, 3, 1, 10_000_000, 12_345)
    counts = dict(entered=1_980_715, exited=19_671, traits_changed=120_000, sent=2_120_386, superseded=0)
    problems = dict(rejected=1_234, retried=56, failed=7, pending=1_297, retired_audiences=1, retired_traits=0)
    quiet = dict.fromkeys(problems, 0)
    runs = [
        RunStatus("r1", "marketing_eu", "segment", when, when, "incomplete", False, **counts, **problems, error=None),
        RunStatus("r2", "clevertap", "clevertap", when, when, "succeeded", False, **counts, **quiet, error=None),
    ]
    widest = ComputationCounts("trait", "notification_clicks_last_30_days", 0, 0, 1_980_715, 0, 0, None, 1_980_000)
    widest.rejected, widest.pending = 1_234, 1_297
    computations = {"r1": [ComputationCounts("audience", "order_completed_last_30days", 1_980_715, 19_671), widest]}
    loads = [load, replace(load, schema="clevertap_eu_app")]
    report = StatusReport("/data/warehouse.duckdb", loads, runs, [], computations)

    lines = _render(status_parts(report), 80)

    assert max(len(line.rstrip()) for line in lines) <= 80
    text = "\n".join(lines)
    assert "…" not in text  # nothing cut short
    for shown in ("2026-11-24 09:43", "ec95c6ff", "clevertap_eu_app", "10,000,000", "12,345", "1,980,715", "2,120,386"):
        assert shown in text
    for title in ("recent loads into clevertap_prod", "recent loads into clevertap_eu_app"):
        assert title in text
    for title in ("recent sync runs to marketing_eu", "recent sync runs to clevertap"):
        assert title in text
    problem_line = "2026-11-24 09:43 incomplete: rejected 1,234, retried 56, failed 7, pending 1,297, retired 1"
    assert problem_line in " ".join(text.split())
    assert "succeeded:" not in text  # nothing else to say about that run
    assert "newest run to marketing_eu, per audience and trait" in text
    assert "notification_clicks_last_30_days" in text and "1,980,000" in text
    assert "notification_clicks_last_30_days: rejected 1,234, pending 1,297" in text


def jsonl_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sync_prints_counts_per_audience_and_trait(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(1, 2))
    engage.audience("newsletter", users(3))
    engage.trait("lifetime_value", {("u1", "a1"): 3})
    env = sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "identify.jsonl"))

    result = runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", str(engage.path)], env=env)

    assert result.exit_code == 0, result.output
    assert "per audience and trait" in text(result)
    assert "key entered exited changed sent" in text(result)
    assert "newsletter 1 0 0 1" in text(result)
    assert "vip 2 0 0 2" in text(result)
    assert "lifetime_value 0 0 1 1" in text(result)


def test_a_sync_that_would_empty_an_audience_exits_3_until_allowed(engage: EngageData, tmp_path: Path) -> None:
    out = tmp_path / "identify.jsonl"
    env = sync_environment(CTSYNC_JSONL_PATH=str(out))
    engage.audience("vip", users(*range(120)))
    assert runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", str(engage.path)], env=env).exit_code == 0
    engage.audience("vip", [])

    refused = runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", str(engage.path)], env=env)

    assert refused.exit_code == EXIT_REFUSED == 3
    assert "audience vip: 120 of 120 confirmed members would exit (100%)" in text(refused)
    assert "ctsync sync --destination jsonl --allow-mass-change" in text(refused)
    assert "vip ! 0 120 0 0" in text(refused)
    assert len(jsonl_lines(out)) == 120

    dry = runner.invoke(app, ["sync", "-d", "jsonl", "--dry-run", "--warehouse", str(engage.path)], env=env)
    assert dry.exit_code == 0, dry.output
    assert "a real sync to 'jsonl' would be refused" in text(dry)
    status = runner.invoke(app, ["status", "--warehouse", str(engage.path)], env=env)
    assert "a real sync to 'jsonl' would be refused: audience vip: 120 of 120" in text(status)

    allowed = runner.invoke(
        app, ["sync", "-d", "jsonl", "--allow-mass-change", "--warehouse", str(engage.path)], env=env
    )
    assert allowed.exit_code == 0, allowed.output
    assert "mass change allowed by the operator (allow_mass_change): audience vip" in text(allowed)
    assert [line["traits"] for line in jsonl_lines(out)[120:]] == [{"vip": False}] * 120


def test_status_shows_a_refused_run_and_its_counts_per_audience(engage: EngageData, tmp_path: Path) -> None:
    env = sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "identify.jsonl"))
    engage.audience("vip", users(*range(10)))
    engage.audience("newsletter", users(1))
    runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", str(engage.path)], env=env)
    engage.audience("vip", users(9))
    engage.audience("newsletter", users(1, 2))
    floor = ["--mass-change-floor", "5"]
    assert runner.invoke(app, ["sync", "-d", "jsonl", *floor, "--warehouse", str(engage.path)], env=env).exit_code == 3

    result = runner.invoke(app, ["status", "--warehouse", str(engage.path)], env=env)

    assert result.exit_code == 0, result.output
    assert "sync to 'jsonl' refused: audience vip: 9 of 10 confirmed members would exit (90%)" in text(result)
    assert "newest run to jsonl, per audience and trait" in text(result)
    assert "newsletter 1 0 0 0" in text(result)
    assert "vip ! 0 9 0 0" in text(result)


def test_a_dry_run_writes_every_change_to_a_file(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(*range(50)))
    changes = tmp_path / "changes.csv"
    env = sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "identify.jsonl"))

    result = runner.invoke(
        app, ["sync", "-d", "jsonl", "--dry-run", "--output", str(changes), "--warehouse", str(engage.path)], env=env
    )

    assert result.exit_code == 0, result.output
    assert f"wrote all 50 changes to {changes}" in text(result)
    lines = changes.read_text().splitlines()
    assert lines[0] == "change,computation_class,computation_key,user_id,anonymous_id,value,message"
    assert len(lines) == 51 and lines[1] == "entered,audience,vip,u0,a0,true,new"
    not_dry = runner.invoke(app, ["sync", "-d", "jsonl", "-o", str(changes), "--warehouse", str(engage.path)], env=env)
    assert not_dry.exit_code == 2 and "add --dry-run" in text(not_dry)
