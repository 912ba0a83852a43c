"""``ctsync sync`` and ``ctsync status``: thin commands over :mod:`ctsync.engage.run` and :mod:`ctsync.status`.

Mounted on the main command with ``register(app)``; also runnable on their own as
``python -m ctsync.cli_sync sync --destination NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctsync.cli_support import (
    ConfigOption,
    JsonOption,
    WarehouseOption,
    err,
    jsonable,
    out,
    print_json,
    progress_bar,
    run_command,
    styled,
)
from ctsync.settings import load_settings

if TYPE_CHECKING:  # the engine is imported when a command runs, not for --help
    from ctsync.engage.summary import ComputationCounts, SyncSummary
    from ctsync.status import RunStatus, StatusReport


def register(app: typer.Typer) -> None:
    """Add ``sync`` and ``status`` to ``app``."""
    app.command("sync")(sync)
    app.command("status")(status)


EXIT_REFUSED = 3
"""``ctsync sync`` exit status when the mass-change guard refused the run."""


def sync(
    destination: Annotated[
        str,
        typer.Option(
            "--destination",
            "-d",
            help="Destination name from the settings file, "
            "or clevertap / segment / jsonl configured from the environment.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send and store nothing.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="With --dry-run: write every change to this CSV file (change, computation_class, "
            "computation_key, user_id, anonymous_id, value, message new|resend).",
        ),
    ] = None,
    allow_mass_change: Annotated[
        bool,
        typer.Option(
            "--allow-mass-change",
            help="Send a run that exits most of an audience's confirmed members (or nulls most of a "
            "trait's values); without it such a run is refused. Check the build first.",
        ),
    ] = False,
    mass_change_share: Annotated[
        float | None,
        typer.Option(
            help="Refuse a run that removes more than this share of an audience's confirmed members "
            "(a trait's values); 1 turns the guard off [default: 0.5].",
            envvar="CTSYNC_MASS_CHANGE_SHARE",
            show_envvar=True,
        ),
    ] = None,
    mass_change_floor: Annotated[
        int | None,
        typer.Option(
            help="...when it removes at least this many people; emptying one of 10 or more is refused whatever "
            "the floor [default: 100].",
            envvar="CTSYNC_MASS_CHANGE_FLOOR",
            show_envvar=True,
        ),
    ] = None,
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another sync (or DuckDB writer) to finish before giving up.")
    ] = 10.0,
    keep_sent_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Days sent messages stay in the outbox before they are deleted; 0 keeps them all [default: 30].",
            envvar="CTSYNC_KEEP_SENT_DAYS",
            show_envvar=True,
        ),
    ] = None,
    engage_source: Annotated[
        str | None,
        typer.Option(
            envvar="CTSYNC_ENGAGE_SOURCE",
            show_envvar=True,
            help="Read the audiences and traits from here, not from the warehouse (which then only keeps the "
            "sync's state): spark (a session with the spark target's settings), spark:SCHEMA, sc://HOST:PORT "
            "(Spark Connect), or a folder of Parquet folders, one per engage relation. See docs/spark.md.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Send Identify calls for audience entries/exits and changed computed traits to a destination.

    Exit status: 0 done; 1 messages rejected or still pending (the next run resends them); 2 a
    problem to fix (settings, warehouse, arguments); 3 refused by the mass-change guard (nothing sent).
    """
    from ctsync.engage.guard import MassChangeRefused
    from ctsync.engage.run import sync_destination
    from ctsync.prefect_api import cli_read_secret

    def action() -> SyncSummary | MassChangeRefused:
        settings = load_settings()
        with progress_bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def on_progress(phase: str, done: int, total: int) -> None:
                if phase == "diff":
                    tasks["diff"] = bar.add_task("comparing with confirmed state", total=None)
                    return
                if "diff" in tasks:
                    bar.remove_task(tasks.pop("diff"))
                if "send" not in tasks:
                    tasks["send"] = bar.add_task(f"sending to {destination}", total=total)
                bar.update(tasks["send"], completed=done)

            try:
                return sync_destination(
                    destination,
                    warehouse=warehouse or settings.warehouse,
                    config_path=config,
                    dry_run=dry_run,
                    progress=on_progress,
                    wait_seconds=wait,
                    keep_sent_days=keep_sent_days,
                    allow_mass_change=allow_mass_change,
                    mass_change_share=mass_change_share,
                    mass_change_floor=mass_change_floor,
                    output=output,
                    secret_resolver=cli_read_secret,
                    engage_source=engage_source,
                )
            except MassChangeRefused as refused:
                return refused

    outcome = run_command(action, json_output=json_output)
    if json_output:
        refused = isinstance(outcome, MassChangeRefused)
        summary = outcome.summary if isinstance(outcome, MassChangeRefused) else outcome
        document = {"status": "refused" if refused else summary.status, **jsonable(summary)}
        if refused:
            document["error"] = str(outcome)
        print_json(document)
        if refused:
            raise typer.Exit(EXIT_REFUSED)
        if summary.status != "succeeded":
            raise typer.Exit(1)
        return
    if isinstance(outcome, MassChangeRefused):
        for part in computations_parts(outcome.summary.computations, "per audience and trait (nothing sent)"):
            out().print(part)
        err().print(styled("bold red", "error:", f" {outcome}"))
        raise typer.Exit(EXIT_REFUSED)
    _print_summary(outcome)
    if outcome.status != "succeeded":
        raise typer.Exit(1)


def _print_summary(summary: object) -> None:
    from ctsync.engage.run import SyncSummary

    assert isinstance(summary, SyncSummary)
    what = "would send" if summary.dry_run else "synced"
    out().print(
        f"{what} {summary.destination} ({summary.destination_kind}): "
        f"{summary.entered:,} entered, {summary.exited:,} exited, {summary.traits_changed:,} traits changed"
    )
    if summary.engage_source:
        out().print(
            f"read from {summary.engage_source}: {sum(summary.engage_rows.values()):,} rows of "
            f"{len(summary.engage_rows)} engage relations in {summary.engage_read_seconds:.2f} s"
        )
    for part in computations_parts(summary.computations, "per audience and trait") if summary.computations else []:
        out().print(part)
    if summary.dry_run:
        _print_dry_run(summary)
    else:
        rate = f" ({summary.send_rate:,.0f}/s)" if summary.sent else ""
        out().print(
            f"sent {summary.sent:,}, rejected {summary.rejected:,}, retried {summary.retried:,}, "
            f"failed {summary.failed:,}, superseded {summary.superseded:,}; still pending {summary.pending:,}",
        )
        out().print(
            f"diff + outbox {summary.diff_seconds:.2f} s, sending {summary.send_seconds:.2f} s{rate}; "
            f"run {summary.run_id}: {summary.status}",
        )
        if summary.pruned:
            out().print(f"deleted {summary.pruned:,} old messages no run needs again from the outbox")
        if summary.mass_change:
            err().print(summary.mass_change, style="yellow")
    retired = [f"audience {key}" for key in summary.retired_audiences] + [
        f"trait {key}" for key in summary.retired_traits
    ]
    out().print(
        f"retired audiences: {len(summary.retired_audiences)}, retired traits: {len(summary.retired_traits)}"
        + (f" ({', '.join(retired)}: nothing is sent for them)" if retired else ""),
    )
    for code, reason, count in summary.rejections:
        err().print(styled("yellow", f"{count:,} x", f" {code or '?'}: {reason or 'no reason given'}"))
    for reason, count in summary.left_out_reasons:
        err().print(styled("yellow", f"{count:,} x", f" left out (the rest was sent): {reason}"))
    if summary.stopped_early:
        err().print(styled("yellow", "stopped early:", f" {summary.stopped_early}"))


def _print_dry_run(summary: SyncSummary) -> None:
    if summary.preview:
        table = Table(title=f"first {len(summary.preview)} of {summary.changes:,} changes")
        for column in ("change", "key", "user_id", "anonymous_id", "value", "resend"):
            table.add_column(column)
        for row in summary.preview:
            table.add_row(
                row.change,
                f"{row.computation_class}:{row.computation_key}",
                row.user_id or "",
                row.anonymous_id or "",
                row.value,
                "yes" if row.resend else "",
            )
        out().print(table)
    if summary.output:
        out().print(f"wrote all {summary.changes:,} changes to {summary.output}")
    if summary.mass_change:
        err().print(styled("yellow", "mass-change guard:", f" {summary.mass_change}"))
    out().print(f"dry run: nothing was sent or stored ({summary.pending:,} messages already pending)")


def computations_parts(computations: Sequence[ComputationCounts], title: str) -> list[str | Table]:
    """Counts per audience and trait: a table that fits an 80-column terminal, then a line for each
    one with messages rejected, failed or still pending (no column for a mostly-zero count).

    Keys are unique across audiences and traits; audiences come first. A row past the mass-change
    limit is marked ``!`` (and red).
    """
    table = _compact_table(title)
    for column in ("key", "entered", "exited", "changed", "sent"):
        table.add_column(column, no_wrap=True, justify="left" if column == "key" else "right")
    lines: list[str | Table] = []
    for counts in computations:
        table.add_row(
            counts.computation_key + (" !" if counts.mass_change else ""),
            *(f"{value:,}" for value in (counts.entered, counts.exited, counts.changed, counts.sent)),
            style="red" if counts.mass_change else None,
        )
        undone = (("rejected", counts.rejected), ("failed", counts.failed), ("pending", counts.pending))
        if any(count for _, count in undone):
            lines.append(f"{counts.computation_key}: " + ", ".join(f"{name} {n:,}" for name, n in undone if n))
    if any(counts.mass_change for counts in computations):
        table.caption = "! past the mass-change limit"
    return [table, *lines]


def status(
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(help="How many loads and sync runs to show.")] = 10,
    json_output: JsonOption = False,
) -> None:
    """Show recent loads, recent sync runs with their counts, and messages waiting to be sent."""
    from ctsync.status import recent_status

    def action() -> StatusReport:
        return recent_status(warehouse or load_settings().warehouse, limit=limit)

    report = run_command(action, json_output=json_output)
    if json_output:
        print_json(report)
        return
    for part in status_parts(report):
        out().print(part)


def status_parts(report: StatusReport) -> list[str | Table]:
    """What ``ctsync status`` prints, one part a line or a table; it fits an 80-column terminal.

    One table per schema and per destination, newest first, so neither needs a column of its own.
    """
    parts: list[str | Table] = [f"warehouse: {report.warehouse}"]
    for schema in dict.fromkeys(load.schema for load in report.loads):
        loads = _compact_table(f"recent loads into {schema}")
        for column in ("started", "load", "files", "loaded", "problems", "new rows", "rejected rows"):
            loads.add_column(column, no_wrap=True, justify="left" if column in ("started", "load") else "right")
        for load in report.loads:
            if load.schema == schema:
                loads.add_row(
                    _when(load.started_at),
                    load.load_id[:LOAD_ID_SHOWN],
                    f"{load.files:,}",
                    f"{load.loaded:,}",
                    f"{load.failed + load.interrupted:,}",
                    f"{load.rows_inserted:,}",
                    f"{load.rows_rejected:,}",
                )
        parts.append(loads)
    if not report.loads:
        parts.append("no loads yet")
    for destination in dict.fromkeys(run.destination for run in report.runs):
        runs = _compact_table(f"recent sync runs to {destination}")
        for column in ("started", "status", "entered", "exited", "traits", "sent"):
            runs.add_column(column, no_wrap=True, justify="left" if column in ("started", "status") else "right")
        mine = [run for run in report.runs if run.destination == destination]
        for run in mine:
            runs.add_row(
                _when(run.started_at),
                "dry run" if run.dry_run else run.status,
                f"{run.entered:,}",
                f"{run.exited:,}",
                f"{run.traits_changed:,}",
                f"{run.sent:,}",
            )
        parts.append(runs)
        # Other counts under the table, only for runs that have any: no column for a mostly-zero count.
        for run in mine:
            if problems := _run_problems(run):
                parts.append(f"{_when(run.started_at)} {run.status}: {problems}")
        newest = mine[0]
        if newest.status == "refused" or (newest.dry_run and newest.error):
            parts.append(f"{_when(newest.started_at)} {newest.error}")
        if computations := report.computations.get(newest.run_id):
            parts += computations_parts(computations, f"newest run to {destination}, per audience and trait")
    if not report.runs:
        parts.append("no sync runs yet")
    for waiting in report.outbox:
        parts.append(
            f"{waiting.destination}: {waiting.pending:,} pending and {waiting.rejected:,} rejected messages "
            "wait for the next sync" + (f" (run {waiting.locked_by} is syncing now)" if waiting.locked_by else "")
        )
    return parts


LOAD_ID_SHOWN = 8
"""Characters of a load id ``status`` shows (the full id is in ``_loads.load_id``)."""


def _compact_table(title: str) -> Table:
    """A table without vertical rules or outer padding."""
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, title_justify="left")


def _run_problems(run: RunStatus) -> str:
    """A run's other counts, only those that are not zero (``rejected 2, retried 5``)."""
    counts = (
        ("rejected", run.rejected),
        ("retried", run.retried),
        ("failed", run.failed),
        ("pending", run.pending),
        ("retired", run.retired_audiences + run.retired_traits),
    )
    return ", ".join(f"{name} {count:,}" for name, count in counts if count)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


app = typer.Typer(
    name="ctsync", add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False, no_args_is_help=True
)
register(app)

if __name__ == "__main__":
    app()
