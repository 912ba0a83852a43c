"""The ``ctsync`` command: parses arguments, calls the library, prints results."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctsync.cli_lake import LakeOption
from ctsync.cli_support import (
    JsonOption,
    VersionOption,
    WarehouseOption,
    err,
    out,
    print_json,
    progress_bar,
    run_command,
    styled,
    use_storage_settings,
)
from ctsync.errors import CtsyncError
from ctsync.settings import load_settings

if TYPE_CHECKING:  # imported when a command runs, not for --help
    from ctsync.warehouse.loader import LoadSummary

app = typer.Typer(
    name="ctsync",
    help="CleverTap exports -> Segment-style warehouse tables -> dbt audiences -> Identify calls.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(version: VersionOption = False) -> None:
    """CleverTap exports -> Segment-style warehouse tables -> dbt audiences -> Identify calls."""


@app.command()
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the export files into.")],
    events: Annotated[int, typer.Option(help="How many events to write.")] = 20_000,
    users: Annotated[int, typer.Option(help="How many users they belong to.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same files.")] = 7,
    days: Annotated[int, typer.Option(help="Days of history, ending at --end.")] = 45,
    end: Annotated[
        str | None,
        typer.Option(help="Last moment of the export (ISO date or time, UTC); default now."),
    ] = None,
    timezone: Annotated[str, typer.Option(help="The CleverTap project's timezone for ts values.")] = "UTC",
    max_records_per_file: Annotated[int, typer.Option(help="Split a file series after this many lines.")] = 100_000,
    no_profiles: Annotated[bool, typer.Option("--no-profiles", help="Do not write a profile export.")] = False,
) -> None:
    """Write a realistic CleverTap export (event files and a profile file) for trying ctsync out."""
    from ctsync.exports.sample import write_sample_export

    def action() -> None:
        if out_dir.exists() and not out_dir.is_dir():
            raise CtsyncError(f"{out_dir} is a file: give a folder to write the export into")
        end_at = _parse_end(end, "--end")
        with progress_bar(
            TextColumn("writing sample"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task("events", total=events)
            summary = write_sample_export(
                out_dir,
                events=events,
                users=users,
                seed=seed,
                end=end_at,
                days=days,
                timezone=timezone,
                max_records_per_file=max_records_per_file,
                profiles=not no_profiles,
                progress=lambda n: progress.advance(task, n),
            )
        out().print(
            f"wrote {summary.events:,} events for {summary.users:,} users in {len(summary.files)} files "
            f"to {summary.directory}" + (f" (profiles: {summary.profile_file.name})" if summary.profile_file else "")
        )

    run_command(action)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new project (created if needed).")],
    name: Annotated[
        str | None, typer.Option(help="The dbt project's name [default: the folder's name in snake_case].")
    ] = None,
) -> None:
    """Start a project: a dbt project on ctsync's dbt package, ctsync.yml, profiles.yml, prefect.yaml and flows."""
    from ctsync.scaffold import init_project

    scaffold = run_command(lambda: init_project(directory, name=name))
    out().print(f"created the project {scaffold.name} in {directory}: {', '.join(sorted(scaffold.written))}")
    out().print(
        f"next: cd {directory}; ctsync sample demo/export; ctsync load demo/export --nickname CleverTap_Prod; "
        "ctsync build; ctsync sync --destination jsonl. Add audiences to models/audiences/ (see its README.md)."
    )


def _parse_end(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CtsyncError(f"{option} must be an ISO date or time such as 2026-11-01, not {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def load(
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH", help="Export files, folders or globs (local or s3://...).")
    ],
    nickname: Annotated[str, typer.Option(help="Source nickname; its schema name holds the tables.")],
    timezone: Annotated[str, typer.Option(help="The CleverTap project's IANA timezone (ts is local).")] = "UTC",
    region: Annotated[str, typer.Option(help="The source's region: us or eu.")] = "us",
    warehouse: WarehouseOption = None,
    lake: LakeOption = None,
    user_id_fields: Annotated[
        str, typer.Option(help="Profile fields for user_id, in priority order.")
    ] = "identity,email,phone",
    anonymous_id_field: Annotated[str, typer.Option(help="Profile field for anonymous_id.")] = "objectId",
    batch_mb: Annotated[
        int,
        typer.Option(
            min=16,
            envvar="CTSYNC_BATCH_MB",
            show_envvar=True,
            help="JSON per transaction, in MB: its size sets the load's peak memory (96: about 550 MiB; "
            "512: about 900 MiB and a third faster).",
        ),
    ] = 96,
    json_output: JsonOption = False,
) -> None:
    """Load CleverTap event export files into Segment-style tables."""
    from ctsync.warehouse.events import IdentifierPriority
    from ctsync.warehouse.loader import LoadOptions, load_export_files

    def action() -> LoadSummary:
        settings = load_settings()
        use_storage_settings(None)
        fields = tuple(field.strip() for field in user_id_fields.split(",") if field.strip())
        if not fields:
            raise CtsyncError("--user-id-fields needs at least one profile field, e.g. identity,email,phone")
        options = LoadOptions(
            nickname=nickname,
            timezone=timezone,
            region=region.lower(),
            workspace_region=settings.workspace_region,
            identifiers=IdentifierPriority(user_id=fields, anonymous_id=anonymous_id_field.strip()),
            batch_bytes=batch_mb * 1024 * 1024,
        )
        with progress_bar(
            TextColumn("loading"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]} files"),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task("load", total=None, files=0)

            def on_progress(files: int, size: int) -> None:
                done = progress.tasks[task].fields["files"] + files
                progress.update(task, advance=size, files=done)

            def on_start(total_files: int, total_bytes: int) -> None:
                progress.update(task, total=total_bytes)

            summary = load_export_files(
                paths,
                options,
                warehouse=warehouse or settings.warehouse,
                lake=lake or settings.lake,
                progress=on_progress,
                on_start=on_start,
            )
        if json_output:
            print_json(load_summary_document(summary))
        else:
            _print_load_summary(summary)
        return summary

    summary = run_command(action, json_output=json_output)
    if summary.problems:
        raise typer.Exit(1)


def _print_load_summary(summary: LoadSummary) -> None:
    table = Table(title=f"{summary.schema} in {summary.warehouse}", show_lines=False)
    table.add_column("event table")
    table.add_column("new rows", justify="right")
    for name, count in sorted(summary.inserted_by_event.items()):
        table.add_row(name, f"{count:,}")
    if summary.inserted_by_event:
        out().print(table)
    statuses = ", ".join(
        f"{summary.count(status)} {status}"
        for status in ("loaded", "truncated", "corrupt", "skipped", "unsupported", "failed")
        if summary.count(status) or status in ("loaded", "skipped", "failed")
    )
    read = summary.total("lines_read")
    speed = f", {read / summary.seconds:,.0f} lines/s" if summary.seconds > 0 and read else ""
    out().print(f"files: {statuses} | {summary.seconds:.1f} s{speed}")
    out().print(
        f"lines: {read:,} read = {summary.total('rows_loaded'):,} valid ({summary.total('rows_inserted'):,} new) "
        f"+ {summary.total('rows_rejected'):,} rejected + {summary.total('rows_skipped'):,} skipped: "
        + ("every line accounted for" if summary.reconciles else "the counts do not reconcile"),
        style=None if summary.reconciles else "red",
    )
    if summary.total("rows_rejected"):
        out().print(f"rejected lines are in {summary.schema}._rejected with their reasons")
    unplaced = sum(summary.unplaced_by_table.values())
    if unplaced:
        tables = ", ".join(f"{table} {count:,}" for table, count in sorted(summary.unplaced_by_table.items()))
        out().print(
            f"{unplaced:,} values had no column of their own (a repeated key, another spelling of a column, "
            f"a field outside CleverTap's record) and are kept in _unplaced_values: {tables}"
        )
    if summary.interrupted_before:
        out().print(f"{summary.interrupted_before} file(s) left unfinished by an earlier run were loaded again")
    if summary.upgrade.moved:
        out().print(
            f"{len(summary.upgrade.moved)} column(s) an earlier ctsync named otherwise were moved to Segment's names "
            f"({summary.upgrade.unplaced_values:,} value(s) kept in _unplaced_values; see docs/decisions.md)"
        )
    for view in summary.upgrade.views_left_out:
        err().print(styled("red", "view dropped", f" {view}: it read a column that is gone; create it again"))
    hidden = [result for result in summary.files if result.status == "skipped" and result.file.hidden]
    if hidden:
        out().print(f"{len(hidden)} hidden file(s) skipped, e.g. {hidden[0].file.url}")
    for result in summary.problems:
        err().print(styled("red", result.status, f" {result.file.url}: {result.error}"))


def load_summary_document(summary: LoadSummary) -> dict[str, object]:
    """``ctsync load --json``: totals, new rows per table and every file with its status and counts."""
    totals = ("lines_read", "rows_loaded", "rows_inserted", "rows_rejected", "rows_skipped")
    return {
        "schema": summary.schema,
        "warehouse": summary.warehouse,
        "ok": not summary.problems,
        "seconds": round(summary.seconds, 3),
        "files": {status: summary.count(status) for status in sorted({f.status for f in summary.files})},
        "totals": {name: summary.total(name) for name in totals},
        "reconciles": summary.reconciles,
        "new_rows": summary.inserted_by_event,
        "unplaced_values": summary.unplaced_by_table,
        "interrupted_before": summary.interrupted_before,
        "upgraded_columns": summary.upgrade.moved,
        "views_dropped": summary.upgrade.views_left_out,
        "file_results": [
            {"url": f.file.url, "kind": f.file.kind, "status": f.status, "error": f.error, "counts": f.counts}
            for f in summary.files
        ],
    }


@app.command()
def build(
    as_of: Annotated[
        str | None, typer.Option(help="Compute memberships and traits as of this ISO time (default now).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            envvar="CTSYNC_DBT_TARGET", show_envvar=True, help="dbt target from profiles.yml (duckdb, postgres, spark)."
        ),
    ] = None,
    warehouse: WarehouseOption = None,
    select: Annotated[list[str] | None, typer.Option(help="dbt node selection (repeatable).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Build audiences and computed traits: dbt build of the project, with its log."""
    from ctsync.build import BuildResult, build_models

    def action() -> BuildResult:
        moment = _parse_end(as_of, "--as-of")

        def show(level: str, message: str) -> None:
            err().print(message, style={"warn": "yellow", "error": "red"}.get(level))

        return build_models(warehouse=warehouse, target=target, as_of=moment, select=select or (), on_log=show)

    result = run_command(action, json_output=json_output)
    if json_output:
        print_json(result)
        if not result.success:
            raise typer.Exit(1)
        return
    counts = ", ".join(f"{count} {name}" for name, count in sorted(result.counts.items()))
    out().print(f"dbt build {'succeeded' if result.success else 'FAILED'} in {result.seconds:.1f} s: {counts}")
    out().print(f"sources read: {', '.join(result.sources)}")
    for title, sizes in (
        ("audience members", result.audience_sizes),
        ("people with a trait value", result.trait_sizes),
    ):
        if sizes:
            listed = ", ".join(f"{key} {size:,}" for key, size in sorted(sizes.items()))
            out().print(f"{title}: {listed}")
    for failure in result.failures:
        err().print(styled("red", "failed", f" {failure}"))
    if not result.success:
        raise typer.Exit(1)


@app.command()
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "ctsync-report.html"
    ),
    runs: Annotated[int, typer.Option(min=1, help="How many recent sync runs to show.")] = 20,
    warehouse: WarehouseOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write an HTML page: audience and trait sizes over time (every build) and each sync run's counts."""
    from ctsync.report import ReportData, write_report

    def action() -> ReportData:
        return write_report(warehouse or load_settings().warehouse, output, runs=runs)

    data = run_command(action, json_output=json_output)
    if json_output:
        print_json({"output": output, "sizes": data.sizes, "runs": data.runs})
        return
    builds = len({point.built_at for point in data.sizes})
    out().print(f"wrote {output}: {builds} build(s), {len(data.runs)} sync run(s); open it in a browser")


def _mount() -> None:
    from ctsync.cli_config import config_app
    from ctsync.cli_events import events_app
    from ctsync.cli_explain import explain
    from ctsync.cli_exports import exports_app
    from ctsync.cli_lake import lake_app
    from ctsync.cli_sync import register as register_sync

    register_sync(app)
    app.add_typer(config_app, name="config", help="The settings file: validate it, print its JSON Schema.")
    app.command("explain")(explain)
    app.add_typer(exports_app, name="exports", help="CleverTap export jobs: list, show, run, stop, validate.")
    app.add_typer(events_app, name="events", help="Send warehouse events (Track, Page, Screen) to CleverTap.")
    app.add_typer(lake_app, name="lake", help="The lake: publish committed batches, register its tables in Spark.")


_mount()

if __name__ == "__main__":
    app()
