"""A one-time backfill of an export over a date range (at most the last 60 days)."""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger, task

from ctsync.jobs.backfill import BackfillResult, run_backfill
from flows.artifacts import publish_counts
from flows.load import retry_on_io, use_storage_blocks
from flows.outcomes import IncompleteRun


@task(retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on_io)
def backfill_task(
    export: str, start: date, end: date, config: str | None, warehouse: str | None, lake: str | None = None
) -> BackfillResult:
    use_storage_blocks(config)
    return run_backfill(export, start, end, config=config, warehouse=warehouse, lake=lake)


@flow(name="backfill-clevertap-export")
def backfill_clevertap_export(
    export: str,
    start: date,
    end: date,
    config: str | None = None,
    warehouse: str | None = None,
    lake: str | None = None,
) -> dict[str, int]:
    """Load ``export``'s files for ``start``..``end`` (its local dates); a range CleverTap refuses fails.

    Ends Failed, after publishing its counts, when files did not fully load (failed, unsupported,
    truncated or corrupt); the files that did load stay loaded. ``lake`` (default ``CTSYNC_LAKE``) loads
    into that lake, ``warehouse`` being its state database.
    """
    result = backfill_task(export, start, end, config, warehouse, lake)
    summary = result.summary
    counts = {
        "files loaded": summary.count("loaded"),
        "files skipped": summary.count("skipped"),
        "files not loaded": len(summary.problems),
        "rows": summary.total("rows_loaded"),
        "new rows": summary.total("rows_inserted"),
        "rejected": summary.total("rows_rejected"),
        "outside the range": summary.total("rows_skipped"),
    }
    get_run_logger().info("backfill of %s from %s to %s: %s", export, *result.window, counts)
    publish_counts(f"backfill-{export}", f"Backfill of {export} {result.window[0]}..{result.window[1]}", counts)
    if result.error:
        raise IncompleteRun(
            f"backfill of {export}: {result.error}. Replace or remove the files named (each one's reason is in "
            "the schema's _loads table), then run the backfill again: what did load is not loaded twice."
        )
    return counts
