"""Send warehouse events (Track, Page, Screen) to a CleverTap destination, once per event id."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from ctsync.events.run import EventSyncSummary, sync_events
from ctsync.settings import load_settings
from flows.artifacts import publish_counts
from flows.load import retry_on_io
from flows.outcomes import IncompleteRun
from flows.sync import read_secret_block


@task(retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_on_io)
def sync_events_task(
    destination: str, warehouse: str, schemas: list[str], tables: list[str], config: str | None
) -> EventSyncSummary:
    return sync_events(
        destination,
        warehouse=warehouse,
        schemas=schemas,
        tables=tables,
        config_path=config,
        secret_resolver=read_secret_block,
    )


@flow(name="sync-events-to-clevertap")
def sync_events_to_clevertap(
    destination: str,
    schemas: list[str] | None = None,
    tables: list[str] | None = None,
    warehouse: str | None = None,
    config: str | None = None,
) -> EventSyncSummary:
    """Send the events not sent yet; ends Failed, after publishing its counts, when an event was
    rejected, is still pending or is in doubt (a request without an answer: resend it with
    ``ctsync events sync --resend-in-doubt`` once CleverTap is checked)."""
    summary = sync_events_task(destination, warehouse or load_settings().warehouse, schemas or [], tables or [], config)
    logger = get_run_logger()
    for code, reason, count in summary.problems:
        logger.warning("%s events not accepted: %s %s", count, code or "", reason or "")
    logger.info("events to %s %s: %s", destination, summary.status, summary.counts())
    publish_counts(f"events-{destination}", f"Events to {destination}", summary.counts())
    if summary.status != "succeeded":
        raise IncompleteRun(
            f"events to {destination} {summary.status} (run {summary.run_id}): sent {summary.sent:,}, "
            f"rejected {summary.rejected:,}, pending {summary.pending:,}, in doubt {summary.in_doubt:,}",
            summary,
        )
    return summary
