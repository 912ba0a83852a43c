"""Load CleverTap exports: one export job, or every job that is due."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.runtime import deployment

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.jobs.runner import DueExportsResult, ExportRunResult, run_due_exports, run_export
from ctsync.jobs.store import ExportStatus, ExportStore
from ctsync.settings import load_settings
from flows.artifacts import publish_counts


class LoadIncomplete(Exception):
    """Some files failed to load (I/O): worth a retry."""


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


@task(retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on_io)
def run_one_export(name: str, config: str | None, warehouse: str | None) -> ExportRunResult:
    result = run_export(name, config=config, warehouse=warehouse)
    if not result.ok:
        raise LoadIncomplete(f"export {name}: {result.error or 'some files failed to load'}")
    return result


@task(retries=3, retry_delay_seconds=[10, 60, 300], retry_condition_fn=retry_on_io)
def run_all_due(config: str | None, warehouse: str | None) -> DueExportsResult:
    return run_due_exports(config=config, warehouse=warehouse)


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
    export: str | None = None, config: str | None = None, warehouse: str | None = None
) -> dict[str, int]:
    """Load one export job (``export``) now, or every export job that is due (none named)."""
    logger = get_run_logger()
    totals: dict[str, int] = {"exports run": 0, "files": 0, "rows": 0, "new rows": 0, "rejected": 0, "skipped": 0}
    if export is not None:
        if export_status(export, warehouse) in (ExportStatus.STOPPED, ExportStatus.DONE):
            logger.info("export %s is stopped or done: pausing this deployment's schedule", export)
            pause_this_deployment()
            return totals
        results: tuple[ExportRunResult, ...] = (run_one_export(export, config, warehouse),)
    else:
        due = run_all_due(config, warehouse)
        for problem in due.problems:
            logger.warning(problem)
        if due.not_due:
            logger.info("not due yet: %s", ", ".join(due.not_due))
        results = due.results
    for result in results:
        counts = result.counts
        totals["exports run"] += 1
        totals["files"] += counts.files_loaded
        totals["rows"] += counts.rows_loaded
        totals["new rows"] += counts.rows_inserted
        totals["rejected"] += counts.rows_rejected
        totals["skipped"] += counts.rows_skipped
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
    publish_counts(f"load-{export or 'due'}", f"Load of {export or 'due exports'}", totals)
    return totals


if __name__ == "__main__":
    load_clevertap_exports()
