"""``ctsync events sync``: send warehouse events to a CleverTap destination (thin over :mod:`ctsync.events.run`).

Also runnable on its own: ``python -m ctsync.cli_events sync --destination NAME --schema SCHEMA``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ctsync.cli_support import ConfigOption, JsonOption, WarehouseOption, err, out, print_json, run_command, styled
from ctsync.errors import CtsyncError
from ctsync.settings import load_settings

if TYPE_CHECKING:
    from ctsync.events.run import EventSyncSummary

events_app = typer.Typer(no_args_is_help=True, add_completion=False)


@events_app.command("sync")
def sync_events_command(
    destination: Annotated[str, typer.Option("--destination", help="A CleverTap destination (ctsync.yml or env).")],
    schema: Annotated[
        list[str] | None, typer.Option("--schema", help="Send every event table of this schema (repeatable).")
    ] = None,
    table: Annotated[list[str] | None, typer.Option("--table", help="Send this SCHEMA.TABLE (repeatable).")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only events at or after this ISO-8601 time (the first sync).")
    ] = None,
    resend_in_doubt: Annotated[
        bool,
        typer.Option(
            "--resend-in-doubt",
            help="Send again the events whose request got no answer (check CleverTap does not have them first).",
        ),
    ] = False,
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send the Track, Page and Screen rows not sent yet to CleverTap's Upload API, once per event id."""

    def action() -> EventSyncSummary:
        from ctsync.events.run import sync_events

        start = None
        if since is not None:
            try:
                start = datetime.fromisoformat(since)
            except ValueError:
                raise CtsyncError(
                    f"--since must be an ISO-8601 time, such as 2026-11-01T00:00:00Z, not {since!r}"
                ) from None
        return sync_events(
            destination,
            warehouse=warehouse or load_settings().warehouse,
            schemas=schema or [],
            tables=table or [],
            since=start,
            resend_in_doubt_events=resend_in_doubt,
            config_path=config,
        )

    summary = run_command(action, json_output=json_output)
    if json_output:
        print_json(summary)
    else:
        _print(summary)
    if summary.status != "succeeded":
        raise typer.Exit(1)


def _print(summary: EventSyncSummary) -> None:
    out().print(f"events from {', '.join(summary.sources)} to {summary.destination}")
    out().print(
        f"queued {summary.queued:,}, sent {summary.sent:,}, rejected {summary.rejected:,}, failed {summary.failed:,}, "
        f"in doubt {summary.in_doubt:,}, still pending {summary.pending:,}; run {summary.run_id}: {summary.status}"
    )
    for code, reason, count in summary.problems:
        err().print(styled("yellow", f"{count:,} x", f" {code or '?'}: {reason or 'no reason given'}"))
    for reason, count in summary.left_out_reasons:
        err().print(styled("yellow", f"{count:,} x", f" left out (the rest was sent): {reason}"))
    if summary.in_doubt:
        err().print(
            styled(
                "yellow",
                "in doubt:",
                f" {summary.in_doubt:,} events were handed over without an answer; CleverTap appends events, so "
                "they are not sent again until you check and run with --resend-in-doubt",
            )
        )


if __name__ == "__main__":
    events_app()
