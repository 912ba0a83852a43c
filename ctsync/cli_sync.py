"""``ctsync sync`` and ``ctsync status``: thin commands over :mod:`ctsync.engage.sync`.

Mounted on the main command with ``register(app)``; also runnable on their own as
``python -m ctsync.cli_sync sync --destination NAME``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ctsync.cli_support import run_command
from ctsync.settings import load_settings

console = Console()
err_console = Console(stderr=True)

WarehouseOption = Annotated[
    str | None,
    typer.Option(help="DuckDB file, duckdb:/// URL or postgresql:// URL [env CTSYNC_WAREHOUSE]."),
]


def register(app: typer.Typer) -> None:
    """Add ``sync`` and ``status`` to ``app``."""
    app.command("sync")(sync)
    app.command("status")(status)


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
    warehouse: WarehouseOption = None,
    config: Annotated[
        str | None, typer.Option(help="Project settings file with a destinations: section [env CTSYNC_CONFIG].")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for another sync (or DuckDB writer) to finish before giving up.")
    ] = 10.0,
    keep_sent_days: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Days sent messages stay in the outbox before they are deleted; 0 keeps them all "
            "[env CTSYNC_KEEP_SENT_DAYS; default 30].",
        ),
    ] = None,
) -> None:
    """Send Identify calls for audience entries/exits and changed computed traits to a destination."""
    from ctsync.engage.sync import SyncSummary, sync_destination

    def action() -> SyncSummary:
        settings = load_settings()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
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

            return sync_destination(
                destination,
                warehouse=warehouse or settings.warehouse,
                config_path=config,
                dry_run=dry_run,
                progress=on_progress,
                wait_seconds=wait,
                keep_sent_days=keep_sent_days,
            )

    summary = run_command(action)
    _print_summary(summary)
    if summary.status != "succeeded":
        raise typer.Exit(1)


def _print_summary(summary: object) -> None:
    from ctsync.engage.sync import SyncSummary

    assert isinstance(summary, SyncSummary)
    what = "would send" if summary.dry_run else "synced"
    console.print(
        f"{what} [bold]{summary.destination}[/] ({summary.destination_kind}): "
        f"{summary.entered:,} entered, {summary.exited:,} exited, {summary.traits_changed:,} traits changed",
        highlight=False,
    )
    if summary.dry_run:
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
            console.print(table)
        console.print(f"dry run: nothing was sent or stored ({summary.pending:,} messages already pending)")
    else:
        rate = f" ({summary.send_rate:,.0f}/s)" if summary.sent else ""
        console.print(
            f"sent {summary.sent:,}, rejected {summary.rejected:,}, retried {summary.retried:,}, "
            f"failed {summary.failed:,}, superseded {summary.superseded:,}; still pending {summary.pending:,}",
            highlight=False,
        )
        console.print(
            f"diff + outbox {summary.diff_seconds:.2f} s, sending {summary.send_seconds:.2f} s{rate}; "
            f"run {summary.run_id}: {summary.status}",
            highlight=False,
        )
        if summary.pruned:
            console.print(
                f"deleted {summary.pruned:,} old messages no run needs again from the outbox", highlight=False
            )
    retired = [f"audience {key}" for key in summary.retired_audiences] + [
        f"trait {key}" for key in summary.retired_traits
    ]
    console.print(
        f"retired audiences: {len(summary.retired_audiences)}, retired traits: {len(summary.retired_traits)}"
        + (f" ({', '.join(retired)}: nothing is sent for them)" if retired else ""),
        highlight=False,
    )
    for code, reason, count in summary.rejections:
        err_console.print(f"[yellow]{count:,} x[/] {code or '?'}: {reason or 'no reason given'}", highlight=False)
    if summary.stopped_early:
        err_console.print(f"[yellow]stopped early:[/] {summary.stopped_early}", highlight=False)


def status(
    warehouse: WarehouseOption = None,
    limit: Annotated[int, typer.Option(help="How many loads and sync runs to show.")] = 10,
) -> None:
    """Show recent loads, recent sync runs with their counts, and messages waiting to be sent."""
    from ctsync.engage.sync import StatusReport, recent_status

    def action() -> StatusReport:
        return recent_status(warehouse or load_settings().warehouse, limit=limit)

    report = run_command(action)
    console.print(f"warehouse: {report.warehouse}", highlight=False)
    if report.loads:
        loads = Table(title="recent loads")
        for column in ("started", "schema", "load", "files", "loaded", "failed", "new rows", "rejected rows"):
            loads.add_column(
                column,
                no_wrap=column == "started",
                justify="left" if column in ("started", "schema", "load") else "right",
            )
        for load in report.loads:
            loads.add_row(
                _when(load.started_at),
                load.schema,
                load.load_id,
                f"{load.files:,}",
                f"{load.loaded:,}",
                f"{load.failed + load.interrupted:,}",
                f"{load.rows_inserted:,}",
                f"{load.rows_rejected:,}",
            )
        console.print(loads)
    else:
        console.print("no loads yet")
    if report.runs:
        runs = Table(title="recent sync runs")
        columns = ("started", "destination", "status", "entered", "exited", "traits", "sent", "rejected", "retried")
        for column in (*columns, "failed", "retired"):
            runs.add_column(column, no_wrap=column in columns[:3], justify="left" if column in columns[:3] else "right")
        for run in report.runs:
            runs.add_row(
                _when(run.started_at),
                run.destination,
                "dry run" if run.dry_run else run.status,
                f"{run.entered:,}",
                f"{run.exited:,}",
                f"{run.traits_changed:,}",
                f"{run.sent:,}",
                f"{run.rejected:,}",
                f"{run.retried:,}",
                f"{run.failed:,}",
                f"{run.retired_audiences + run.retired_traits:,}",
            )
        console.print(runs)
    else:
        console.print("no sync runs yet")
    for waiting in report.outbox:
        console.print(
            f"{waiting.destination}: {waiting.pending:,} pending and {waiting.rejected:,} rejected messages "
            "wait for the next sync" + (f" (run {waiting.locked_by} is syncing now)" if waiting.locked_by else ""),
            highlight=False,
        )


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


app = typer.Typer(name="ctsync", add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()
