"""``ctsync exports``: list, show, run, stop and validate the export jobs of the settings file."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import typer
import yaml
from rich.console import JustifyMethod
from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ctsync.cli_support import (
    ConfigOption,
    JsonOption,
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
from ctsync.jobs.runner import (
    ExportEnvironment,
    ExportRunResult,
    SyncedExports,
    run_due_exports,
    run_export,
    stop_export,
    sync_exports,
    utc_now,
    validate_exports,
)
from ctsync.jobs.store import (
    DEFAULT_PAGE_SIZE,
    ExportFilter,
    ExportRun,
    ExportStatus,
    RunStatus,
    StoredExport,
)

exports_app = typer.Typer(
    name="exports",
    help="CleverTap export jobs (the exports: section of the settings file): list, show, run, stop, validate.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

_out = out
_err = err


@exports_app.command("list")
def list_exports(
    type_: Annotated[
        str | None,
        typer.Option("--type", help="events, profiles, or a data type such as engagement_events."),
    ] = None,
    status: Annotated[str | None, typer.Option(help="PENDING, RUNNING, DONE or STOPPED.")] = None,
    frequency: Annotated[str | None, typer.Option(help="one-time or recurring.")] = None,
    exported_from: Annotated[str | None, typer.Option(help="Last run on or after this date (YYYY-MM-DD, UTC).")] = None,
    exported_to: Annotated[str | None, typer.Option(help="Last run on or before this date (YYYY-MM-DD, UTC).")] = None,
    per_page: Annotated[int, typer.Option(help="Exports per page: 10, 20, 30 or 40.")] = DEFAULT_PAGE_SIZE,
    page: Annotated[int, typer.Option(help="Page number, from 1.")] = 1,
    config: ConfigOption = None,
    warehouse: WarehouseOption = None,
    json_output: JsonOption = False,
) -> None:
    """List exports with their status and last run, newest first."""

    def action() -> None:
        filters = ExportFilter(
            data_type=type_,
            status=_status(status),
            frequency=_frequency(frequency),
            exported_from=_date(exported_from, "--exported-from"),
            exported_to=_date(exported_to, "--exported-to"),
        )
        synced = sync_exports(ExportEnvironment.resolve(config, warehouse), require_config=False)
        _print_sync_notes(synced)
        result = synced.store.list_page(filters, page=page, per_page=per_page)
        now = utc_now()
        if json_output:
            runs_by_id = synced.store.runs_by_id([e.last_run_id for e in result.exports if e.last_run_id])
            print_json(
                {
                    "page": result.page,
                    "pages": result.pages,
                    "per_page": result.per_page,
                    "total": result.total,
                    "all_exports": result.all_exports,
                    "exports": [
                        {
                            "name": export.name,
                            "data_type": export.data_type,
                            "kind": export.kind,
                            "status": export.status,
                            "every_hours": export.every_hours,
                            "window": export.window,
                            "nickname": export.definition.get("nickname"),
                            "next_run_at": export.due_at(),
                            "last_run": runs_by_id.get(export.last_run_id or ""),
                        }
                        for export in result.exports
                    ],
                }
            )
            return
        table = Table(show_lines=False, caption="times in UTC")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("name", "left"),
            ("type", "left"),
            ("frequency", "left"),
            ("status", "left"),
            ("nickname", "left"),
            ("last run", "left"),
            ("rows", "right"),
            ("next run", "left"),
        )
        for column, justify in columns:
            table.add_column(column, justify=justify, overflow="fold", no_wrap=column in ("status", "rows"))
        runs = synced.store.runs_by_id([export.last_run_id for export in result.exports if export.last_run_id])
        for export in result.exports:
            last = runs.get(export.last_run_id or "")
            table.add_row(
                export.name,
                export.data_type,
                _frequency_text(export),
                _status_text(export.status),
                str(export.definition.get("nickname", "")),
                _last_run_text(last),
                f"{last.counts.rows_loaded:,}" if last is not None and last.finished_at else "",
                _next_run_text(export, now),
            )
        out = _out()
        if result.exports:
            out.print(table)
        else:
            out.print("no exports match" if result.all_exports else "no exports yet: add them to the settings file")
        matching = f"{result.total} export(s)"
        if result.total != result.all_exports:
            matching += f" match (of {result.all_exports})"
        out.print(f"{matching} | page {result.page} of {result.pages} | {result.per_page} per page")
        if synced.exports is not None:
            defined = {job.name for job in synced.exports.jobs}
            orphans = sorted(set(synced.store.exports()) - defined)
            if orphans:
                out.print(f"not in {synced.environment.config} any more (they do not run): {', '.join(orphans)}")

    run_command(action, json_output=json_output)


@exports_app.command()
def show(
    name: Annotated[str, typer.Argument(help="The export's name.")],
    runs: Annotated[int, typer.Option(help="How many recent runs to show.")] = 10,
    config: ConfigOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Show an export's definition, status and recent runs."""

    def action() -> None:
        synced = sync_exports(ExportEnvironment.resolve(config, warehouse), require_config=False)
        _print_sync_notes(synced, only=name)
        export = synced.store.get(name)
        out = _out()
        now = utc_now()
        out.print(Text.assemble((export.name, "bold"), "  ", _status_text(export.status)))
        facts = [
            ("type", f"{export.data_type} ({export.kind})"),
            ("frequency", _frequency_text(export)),
            ("created", _when(export.created_at)),
            ("edited", _when(export.updated_at) if export.updated_at != export.created_at else "never"),
        ]
        if export.stopped_at is not None:
            facts.append(("stopped", _when(export.stopped_at)))
        facts.append(("next run", _next_run_text(export, now) or "never"))
        for label, value in facts:
            out.print(f"  {label:<10} {value}")
        out.print("definition (in force; edits apply from the next run):")
        out.print(yaml.safe_dump(export.job.definition(), sort_keys=False, allow_unicode=True).rstrip())
        recent = synced.store.runs(name, limit=max(1, runs))
        if not recent:
            out.print("no runs yet")
            return
        table = Table(title=f"last {len(recent)} run(s)")
        for column in ("started (UTC)", "took", "status", "days", "files l/s/f", "read", "loaded", "new"):
            table.add_column(column, justify="right" if column in ("read", "loaded", "new") else "left")
        table.add_column("rejected", justify="right")
        table.add_column("skipped", justify="right")
        table.add_column("error", overflow="fold")
        for run in recent:
            counts = run.counts
            table.add_row(
                _when(run.started_at),
                _took(run),
                run.status.value,
                f"{run.days[0]}..{run.days[1]}" if run.days else "",
                f"{counts.files_loaded}/{counts.files_skipped}/{counts.files_failed}",
                f"{counts.lines_read:,}",
                f"{counts.rows_loaded:,}",
                f"{counts.rows_inserted:,}",
                f"{counts.rows_rejected:,}",
                f"{counts.rows_skipped:,}",
                run.error or "",
            )
        out.print(table)

    run_command(action)


@exports_app.command()
def run(
    name: Annotated[str, typer.Argument(help="The export's name.")],
    config: ConfigOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Run one export now (whether or not it is due) and print what it loaded."""

    def action() -> ExportRunResult:
        use_storage_settings(config)
        with progress_bar(
            TextColumn(f"export {name}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]} files"),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task("load", total=None, files=0)

            def on_progress(files: int, size: int) -> None:
                progress.update(task, advance=size, files=progress.tasks[task].fields["files"] + files)

            def on_start(_files: int, total_bytes: int) -> None:
                progress.update(task, total=total_bytes)

            result = run_export(name, config=config, warehouse=warehouse, progress=on_progress, on_start=on_start)
        _print_result(result)
        return result

    result = run_command(action)
    if not result.ok:
        raise typer.Exit(1)


@exports_app.command("run-due")
def run_due(config: ConfigOption = None, warehouse: WarehouseOption = None) -> None:
    """Run every export that is due: one-time exports still PENDING, recurring ones whose interval has passed."""

    def action() -> bool:
        use_storage_settings(config)
        outcome = run_due_exports(config=config, warehouse=warehouse)
        out = _out()
        for crashed in outcome.crashed_runs:
            out.print(styled("yellow", "recorded a crashed run", f" of {crashed.export_name}: {crashed.error}"))
        for result in outcome.results:
            _print_result(result)
        if outcome.not_due:
            out.print(f"not due yet: {', '.join(outcome.not_due)}")
        if not outcome.results:
            out.print("no export was due")
        for problem in outcome.problems:
            _err().print(styled("red", "not run:", f" {problem}"))
        return outcome.ok

    if not run_command(action):
        raise typer.Exit(1)


@exports_app.command()
def stop(
    name: Annotated[str, typer.Argument(help="The export's name.")],
    config: ConfigOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Stop an export for good (STOPPED exports never run again and cannot be edited)."""

    def action() -> None:
        changed = stop_export(name, config=config, warehouse=warehouse)
        if changed:
            _out().print(f"export {name!r} is now STOPPED; it never runs again (a run in progress finishes first)")
        else:
            _out().print(f"export {name!r} was already STOPPED")

    run_command(action)


@exports_app.command()
def validate(config: ConfigOption = None, warehouse: WarehouseOption = None) -> None:
    """Check the settings file's exports and print every problem (changes nothing)."""

    def action() -> bool:
        environment = ExportEnvironment.resolve(config, warehouse)
        exports, problems = validate_exports(environment)
        out = _out()
        for problem in problems:
            out.print(styled("red", "x", f" {problem}"))
        if problems:
            out.print(f"{exports.path}: {len(problems)} problem(s)")
            return False
        out.print(f"{exports.path}: {len(exports.jobs)} export(s), no problems")
        return True

    if not run_command(action):
        raise typer.Exit(1)


# -- printing ----------------------------------------------------------------------------


def _print_sync_notes(synced: SyncedExports, only: str | None = None) -> None:
    err = _err()
    for job, _window in synced.plan.created:
        if only in (None, job.name):
            err.print(f"registered new export {job.name!r} (PENDING)")
    for job, changed in synced.plan.edited:
        if only in (None, job.name):
            err.print(f"stored the edit of {job.name!r} ({', '.join(changed)}); it applies from the next run")
    for problem in synced.plan.problems:
        if only in (None, problem.export):
            err.print(styled("yellow", "warning:", f" {problem.message}"))
    for crashed in synced.crashed_runs:
        if only in (None, crashed.export_name):
            err.print(styled("yellow", "recorded a crashed run", f" of {crashed.export_name!r}: {crashed.error}"))


def _print_result(result: ExportRunResult) -> None:
    out = _out()
    counts = result.counts
    summary = result.summary
    if summary is not None and summary.inserted_by_event:
        table = Table(title=f"{result.export}: new rows in {summary.schema}")
        table.add_column("table")
        table.add_column("new rows", justify="right")
        for table_name, count in sorted(summary.inserted_by_event.items()):
            table.add_row(table_name, f"{count:,}")
        out.print(table)
    days = f" | days {result.days[0]} to {result.days[1]}" if result.days else ""
    out.print(
        f"export {result.export!r} ({result.data_type}{days}): run {result.status.value}, now ",
        _status_text(result.export_status),
        f" | files: {counts.files_loaded} loaded, {counts.files_skipped} "
        f"skipped, {counts.files_failed} failed | lines: {counts.lines_read:,} read, {counts.rows_loaded:,} loaded "
        f"({counts.rows_inserted:,} new), {counts.rows_rejected:,} rejected, {counts.rows_skipped:,} skipped "
        "(outside the data type or days)",
        sep="",
    )
    if result.error:
        _err().print(styled("red", "error:", f" {result.error}"))
    if summary is not None:
        for failed in summary.failed:
            _err().print(styled("red", "failed", f" {failed.file.url}: {failed.error}"))


def _status_text(status: ExportStatus) -> Text:
    colour = {
        ExportStatus.PENDING: "yellow",
        ExportStatus.RUNNING: "cyan",
        ExportStatus.DONE: "green",
        ExportStatus.STOPPED: "red",
    }[status]
    return Text(status.value, style=colour)


def _frequency_text(export: StoredExport) -> str:
    if export.every_hours is not None:
        return f"every {export.every_hours} h"
    if export.window is None:
        return "one-time"
    start, end = export.window
    return f"one-time {start}" if start == end else f"one-time {start}..{end}"


def _last_run_text(run: ExportRun | None) -> str:
    if run is None:
        return ""
    outcome = "ok" if run.status is RunStatus.SUCCEEDED else run.status.value
    return f"{_when(run.started_at)} {outcome}"


def _next_run_text(export: StoredExport, now: datetime) -> str:
    due = export.due_at()
    if due is None:
        return ""
    return "due now" if due <= now else _when(due)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def _took(run: ExportRun) -> str:
    if run.finished_at is None:
        return "running"
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _status(value: str | None) -> ExportStatus | None:
    if value is None:
        return None
    try:
        return ExportStatus(value.strip().upper())
    except ValueError:
        raise CtsyncError(f"--status must be PENDING, RUNNING, DONE or STOPPED, not {value!r}") from None


def _frequency(value: str | None) -> Literal["one-time", "recurring"] | None:
    if value is None:
        return None
    text = value.strip().lower().replace("_", "-")
    if text == "one-time":
        return "one-time"
    if text == "recurring":
        return "recurring"
    raise CtsyncError(f"--frequency must be one-time or recurring, not {value!r}")


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise CtsyncError(f"{option} must be a date such as 2026-11-01, not {value!r}") from None
