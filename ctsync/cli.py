"""The ``ctsync`` command: parses arguments, calls the library, prints results."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctsync.cli_support import run_command
from ctsync.errors import CtsyncError
from ctsync.settings import load_settings

app = typer.Typer(
    name="ctsync",
    help="CleverTap exports -> Segment-style warehouse tables -> dbt audiences -> Identify calls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


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
        end_at = _parse_end(end)
        with Progress(
            TextColumn("writing sample"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
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
        console.print(
            f"wrote {summary.events:,} events for {summary.users:,} users in {len(summary.files)} files "
            f"to {summary.directory}" + (f" (profiles: {summary.profile_file.name})" if summary.profile_file else "")
        )

    run_command(action)


def _parse_end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CtsyncError(f"--end must be an ISO date or time such as 2026-11-01, not {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def load(
    paths: Annotated[list[str], typer.Argument(help="Export files, folders or globs (local or s3://...).")],
    nickname: Annotated[str, typer.Option(help="Source nickname; its schema name holds the tables.")],
    timezone: Annotated[str, typer.Option(help="The CleverTap project's IANA timezone (ts is local).")] = "UTC",
    region: Annotated[str, typer.Option(help="The source's region: us or eu.")] = "us",
    warehouse: Annotated[
        str | None,
        typer.Option(help="DuckDB file, duckdb:/// URL or postgresql:// URL [env CTSYNC_WAREHOUSE]."),
    ] = None,
    user_id_fields: Annotated[
        str, typer.Option(help="Profile fields for user_id, in priority order.")
    ] = "identity,email,phone",
    anonymous_id_field: Annotated[str, typer.Option(help="Profile field for anonymous_id.")] = "objectId",
) -> None:
    """Load CleverTap event export files into Segment-style tables."""
    from ctsync.warehouse.events import IdentifierPriority
    from ctsync.warehouse.loader import LoadOptions, LoadSummary, load_export_files

    def action() -> LoadSummary:
        settings = load_settings()
        fields = tuple(field.strip() for field in user_id_fields.split(",") if field.strip())
        if not fields:
            raise CtsyncError("--user-id-fields needs at least one profile field, e.g. identity,email,phone")
        options = LoadOptions(
            nickname=nickname,
            timezone=timezone,
            region=region.lower(),
            workspace_region=settings.workspace_region,
            identifiers=IdentifierPriority(user_id=fields, anonymous_id=anonymous_id_field.strip()),
        )
        with Progress(
            TextColumn("loading"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]} files"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
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
                progress=on_progress,
                on_start=on_start,
            )
        _print_load_summary(summary)
        return summary

    summary = run_command(action)
    if summary.problems:
        raise typer.Exit(1)


def _print_load_summary(summary: object) -> None:
    from ctsync.warehouse.loader import LoadSummary

    assert isinstance(summary, LoadSummary)
    table = Table(title=f"{summary.schema} in {summary.warehouse}", show_lines=False)
    table.add_column("event table")
    table.add_column("new rows", justify="right")
    for name, count in sorted(summary.inserted_by_event.items()):
        table.add_row(name, f"{count:,}")
    if summary.inserted_by_event:
        console.print(table)
    statuses = ", ".join(
        f"{summary.count(status)} {status}"
        for status in ("loaded", "truncated", "corrupt", "skipped", "unsupported", "failed")
        if summary.count(status) or status in ("loaded", "skipped", "failed")
    )
    read = summary.total("lines_read")
    speed = f", {read / summary.seconds:,.0f} lines/s" if summary.seconds > 0 and read else ""
    console.print(f"files: {statuses} | {summary.seconds:.1f} s{speed}")
    console.print(
        f"lines: {read:,} read = {summary.total('rows_loaded'):,} valid ({summary.total('rows_inserted'):,} new) "
        f"+ {summary.total('rows_rejected'):,} rejected + {summary.total('rows_skipped'):,} skipped: "
        + ("every line accounted for" if summary.reconciles else "[red]the counts do not reconcile[/]")
    )
    if summary.total("rows_rejected"):
        console.print(f"rejected lines are in {summary.schema}._rejected with their reasons")
    unplaced = sum(summary.unplaced_by_table.values())
    if unplaced:
        tables = ", ".join(f"{table} {count:,}" for table, count in sorted(summary.unplaced_by_table.items()))
        console.print(
            f"{unplaced:,} values had no column of their own (a repeated key, another spelling of a column, "
            f"a field outside CleverTap's record) and are kept in _unplaced_values: {tables}"
        )
    if summary.interrupted_before:
        console.print(f"{summary.interrupted_before} file(s) left unfinished by an earlier run were loaded again")
    hidden = [result for result in summary.files if result.status == "skipped" and result.file.hidden]
    if hidden:
        console.print(f"{len(hidden)} hidden file(s) skipped, e.g. {hidden[0].file.url}", highlight=False)
    for result in summary.problems:
        err_console.print(f"[red]{result.status}[/] {result.file.url}: {result.error}", highlight=False)


@app.command()
def build(
    as_of: Annotated[
        str | None, typer.Option(help="Compute memberships and traits as of this ISO time (default now).")
    ] = None,
    target: Annotated[str | None, typer.Option(help="dbt target from profiles.yml (duckdb, postgres).")] = None,
    warehouse: Annotated[str | None, typer.Option(help="Warehouse [env CTSYNC_WAREHOUSE].")] = None,
    select: Annotated[list[str] | None, typer.Option(help="dbt node selection (repeatable).")] = None,
) -> None:
    """Build audiences and computed traits: dbt build of the project, with its log."""
    from ctsync.build import BuildResult, build_models

    def action() -> BuildResult:
        moment = _parse_end(as_of)

        def show(level: str, message: str) -> None:
            err_console.print(message, style={"warn": "yellow", "error": "red"}.get(level), highlight=False)

        return build_models(warehouse=warehouse, target=target, as_of=moment, select=select or (), on_log=show)

    result = run_command(action)
    counts = ", ".join(f"{count} {name}" for name, count in sorted(result.counts.items()))
    console.print(f"dbt build {'succeeded' if result.success else 'FAILED'} in {result.seconds:.1f} s: {counts}")
    console.print(f"sources read: {', '.join(result.sources)}", highlight=False)
    for title, sizes in (
        ("audience members", result.audience_sizes),
        ("people with a trait value", result.trait_sizes),
    ):
        if sizes:
            listed = ", ".join(f"{key} {size:,}" for key, size in sorted(sizes.items()))
            console.print(f"{title}: {listed}", highlight=False)
    for failure in result.failures:
        err_console.print(f"[red]failed[/] {failure}", highlight=False)
    if not result.success:
        raise typer.Exit(1)


def _mount() -> None:
    from ctsync.cli_explain import explain
    from ctsync.cli_exports import exports_app
    from ctsync.cli_sync import register as register_sync

    register_sync(app)
    app.command("explain")(explain)
    app.add_typer(exports_app, name="exports", help="CleverTap export jobs: list, show, run, stop, validate.")


_mount()

if __name__ == "__main__":
    app()
