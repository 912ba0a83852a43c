"""Sync audiences and computed traits to one destination as Identify calls."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.blocks.system import Secret

from ctsync.engage.guard import MassChangeRefused
from ctsync.engage.run import SyncSummary, sync_destination
from ctsync.settings import load_settings
from flows.artifacts import publish_computations, publish_counts
from flows.load import retry_on_io
from flows.outcomes import IncompleteRun


def read_secret_block(name: str) -> str:
    """Destinations may name a Prefect Secret block (``write_key_secret: segment-write-key``)."""
    value = Secret.load(name).get()
    return str(value)


@task(retries=2, retry_delay_seconds=[30, 120], retry_condition_fn=retry_on_io)
def sync_task(
    destination: str, warehouse: str, config: str | None, dry_run: bool, allow_mass_change: bool
) -> SyncSummary:
    """Not retried when refused by the mass-change guard (a CtsyncError): the next run would be refused too."""
    return sync_destination(
        destination,
        warehouse=warehouse,
        config_path=config,
        dry_run=dry_run,
        secret_resolver=read_secret_block,
        allow_mass_change=allow_mass_change,
    )


@flow(name="sync-audiences")
def sync_audiences(
    destination: str,
    dry_run: bool = False,
    warehouse: str | None = None,
    config: str | None = None,
    allow_mass_change: bool = False,
) -> SyncSummary:
    """Send Identify calls for what changed since the destination last confirmed it.

    Ends Failed, after publishing its counts (in total and per audience and trait), when a message
    was rejected or is still pending (the destination was down, or sending stopped early): the next
    run resends what is pending. A run that would exit most of an audience's confirmed members (or
    null most of a trait's values) sends nothing and ends Failed, saying which; once the build is
    checked, run it with ``allow_mass_change`` to send it. A dry run reports that verdict and completes.
    """
    logger = get_run_logger()
    title = f"Sync to {destination}" + (" (dry run)" if dry_run else "")
    try:
        summary = sync_task(destination, warehouse or load_settings().warehouse, config, dry_run, allow_mass_change)
    except MassChangeRefused as refused:
        publish_counts(f"sync-{destination}", f"{title}: refused", refused.summary.counts())
        publish_computations(f"sync-{destination}", f"{title}: refused", refused.summary.computations)
        raise IncompleteRun(str(refused), refused.summary) from None
    for name in summary.retired_audiences + summary.retired_traits:
        logger.warning("%s is no longer computed: nothing is sent for it", name)
    for code, reason, count in summary.rejections:
        logger.warning("%s messages not accepted: %s %s", count, code or "", reason or "")
    if summary.mass_change:
        logger.warning("%s", summary.mass_change)
    logger.info("sync to %s %s: %s", destination, summary.status, summary.counts())
    publish_counts(f"sync-{destination}", title, summary.counts())
    publish_computations(f"sync-{destination}", title, summary.computations)
    if summary.status != "succeeded":
        raise IncompleteRun(undelivered(summary), summary)
    return summary


def undelivered(summary: SyncSummary) -> str:
    """What a sync that did not succeed left undone, and what to do about it."""
    stopped = f"; sending stopped early: {summary.stopped_early}" if summary.stopped_early else ""
    return (
        f"sync to {summary.destination} {summary.status} (run {summary.run_id}): sent {summary.sent:,}, "
        f"rejected {summary.rejected:,}, failed {summary.failed:,}, still pending {summary.pending:,}{stopped}. "
        "Pending messages are resent by the next run; rejected ones need the reason fixed "
        "(`ctsync status` lists them)."
    )


if __name__ == "__main__":
    sync_audiences("jsonl")
