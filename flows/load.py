"""Load CleverTap exports: one export job, or every job that is due."""

from __future__ import annotations

import os
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.runtime import deployment

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.jobs.runner import DueExportsResult, ExportRunResult, run_due_exports, run_export
from ctsync.jobs.store import ExportStatus, ExportStore
from ctsync.prefect_api import read_block
from ctsync.settings import load_settings
from ctsync.storage import configure_object_storage, load_storage_settings
from flows.artifacts import publish_counts
from flows.outcomes import IncompleteRun


class LoadIncomplete(Exception):
    """An export run that a retry may fix (a busy warehouse, unreadable files); carries the run's result."""

    def __init__(self, message: str, result: ExportRunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def retry_on_io(_task: Any, _task_run: Any, state: Any) -> bool:
    """Retry I/O trouble (a busy warehouse, failed reads); never a user error, which would fail again."""
    try:
        state.result()
    except WarehouseBusy:
        return True
    except CtsyncError:
        return False
    except Exception:
        return True
    return False


def use_storage_blocks(config: str | None) -> None:
    """Object-storage credentials from the Prefect blocks the settings file's ``storage:`` section names."""
    configure_object_storage(load_storage_settings(config, os.environ), read_block)


@task(retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on_io)
def run_one_export(name: str, config: str | None, warehouse: str | None, lake: str | None = None) -> ExportRunResult:
    """Retried only when a retry can fix the run (``retryable``); any other result, failed or not, is returned."""
    use_storage_blocks(config)
    result = run_export(name, config=config, warehouse=warehouse, lake=lake)
    if result.retryable:
        raise LoadIncomplete(f"export {name}: {result.error}", result)
    return result


@task(retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on_io)
def run_all_due(config: str | None, warehouse: str | None, lake: str | None = None) -> DueExportsResult:
    use_storage_blocks(config)
    return run_due_exports(config=config, warehouse=warehouse, lake=lake)


def run_with_retries(name: str, config: str | None, warehouse: str | None, lake: str | None = None) -> ExportRunResult:
    """``run_one_export``; once its retries are spent, the last failed run's result."""
    try:
        return run_one_export(name, config, warehouse, lake)
    except LoadIncomplete as exc:
        if exc.result is None:
            raise
        return exc.result


def export_status(name: str, warehouse: str | None) -> ExportStatus | None:
    try:
        return ExportStore.open(warehouse or load_settings().warehouse).get(name).status
    except CtsyncError:
        return None  # not registered yet: the run registers it


def pause_this_deployment() -> None:
    """A STOPPED export's schedule stops too: pause the deployment this run belongs to."""
    deployment_id = deployment.id
    if deployment_id:
        with get_client(sync_client=True) as client:
            client.pause_deployment(deployment_id)


@flow(name="load-clevertap-exports")
def load_clevertap_exports(
    export: str | None = None, config: str | None = None, warehouse: str | None = None, lake: str | None = None
) -> dict[str, int]:
    """Load one export job (``export``) now, or every export job that is due (none named); into ``lake``
    (default ``CTSYNC_LAKE``) when one is named, ``warehouse`` then being its state database.

    Ends Failed, after publishing its counts, when an export run did not fully load (files failed,
    unsupported, truncated or corrupt) or could not run (a refused edit of the settings file); the
    files that did load stay loaded. Only what a retry can fix is retried: a busy warehouse, unreadable
    files. A warehouse still busy after the retries ends it with WarehouseBusy, which stops the pipeline.
    """
    logger = get_run_logger()
    if export is not None:
        if export_status(export, warehouse) in (ExportStatus.STOPPED, ExportStatus.DONE):
            logger.info("export %s is stopped or done: pausing this deployment's schedule", export)
            pause_this_deployment()
            return totals_of(())
        results: tuple[ExportRunResult, ...] = (run_with_retries(export, config, warehouse, lake),)
        problems: tuple[str, ...] = ()
    else:
        due = run_all_due(config, warehouse, lake)
        if due.not_due:
            logger.info("not due yet: %s", ", ".join(due.not_due))
        results = tuple(
            run_with_retries(result.export, config, warehouse, lake) if result.retryable else result
            for result in due.results
        )
        problems = due.problems
    for result in results:
        log_result(logger, result)
    totals = totals_of(results)
    publish_counts(f"load-{export or 'due'}", f"Load of {export or 'due exports'}", totals)
    failures = [f"export {result.export}: {result.error}" for result in results if not result.ok]
    failures += [f"not run: {problem}" for problem in problems]
    if not failures:
        return totals
    summary = f"{len(failures)} export(s) did not fully load (what did load is kept): " + "; ".join(failures) + "."
    if any(result.retryable and result.summary is None for result in results):
        raise WarehouseBusy(f"{summary} The warehouse stayed busy through every retry; the next run tries again.")
    raise IncompleteRun(
        f"{summary} Replace or remove the files named (each one's reason is in the schema's _loads table), or fix "
        "the settings file (ctsync exports validate), then run the export again.",
        totals,
    )


def totals_of(results: tuple[ExportRunResult, ...]) -> dict[str, int]:
    """The artifact's counts over the export runs."""
    return {
        "exports run": len(results),
        "exports failed": sum(1 for result in results if not result.ok),
        "files": sum(result.counts.files_loaded for result in results),
        "files not loaded": sum(result.counts.files_failed for result in results),
        "rows": sum(result.counts.rows_loaded for result in results),
        "new rows": sum(result.counts.rows_inserted for result in results),
        "rejected": sum(result.counts.rows_rejected for result in results),
        "skipped": sum(result.counts.rows_skipped for result in results),
    }


def log_result(logger: Any, result: ExportRunResult) -> None:
    counts = result.counts
    logger.info(
        "export %s: %s files, %s rows (%s new), %s rejected, %s skipped; now %s",
        result.export,
        counts.files_loaded,
        counts.rows_loaded,
        counts.rows_inserted,
        counts.rows_rejected,
        counts.rows_skipped,
        result.export_status.value,
    )
    if not result.ok:
        logger.error("export %s did not fully load: %s", result.export, result.error)


if __name__ == "__main__":
    load_clevertap_exports()
