"""A lake load spread over Dask workers: each table's files to one worker, recorded and published by the flow.

Needs the ``distributed`` extra (``pip install 'ctsync[distributed]'``: prefect-dask). The workers are a
Dask cluster: ``CTSYNC_DASK_ADDRESS`` (``tcp://scheduler:8786``) names a running one; without it the flow
starts a local cluster of ``CTSYNC_DASK_WORKERS`` processes (2). See docs/lake.md, "Parallel loads".
"""

from __future__ import annotations

import os

from prefect import flow, get_run_logger, task, unmapped
from prefect.futures import wait

from ctsync.errors import CtsyncError
from ctsync.settings import load_settings
from ctsync.warehouse.lake.parallel import (
    Group,
    StagedGroup,
    abandon_parallel_load,
    begin_parallel_load,
    finish_parallel_load,
    plan_groups,
    stage_group,
)
from ctsync.warehouse.loader import LoadOptions
from flows.artifacts import publish_counts
from flows.load import use_storage_blocks
from flows.outcomes import IncompleteRun

try:
    from prefect_dask.task_runners import DaskTaskRunner
except ImportError:  # pragma: no cover - the extra is not installed
    raise CtsyncError("the parallel lake load needs prefect-dask: pip install 'ctsync[distributed]'") from None


def dask_task_runner() -> DaskTaskRunner:
    """The cluster at ``CTSYNC_DASK_ADDRESS``, or a local one of ``CTSYNC_DASK_WORKERS`` worker processes."""
    address = os.environ.get("CTSYNC_DASK_ADDRESS")
    if address:
        return DaskTaskRunner(address=address)
    workers = int(os.environ.get("CTSYNC_DASK_WORKERS") or 2)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


@task(task_run_name="stage {group.route}")
def stage_group_task(group: Group, options: LoadOptions, lake: str, snapshot: str, config: str | None) -> StagedGroup:
    use_storage_blocks(config)
    return stage_group(group, options, lake, snapshot)


@flow(name="load-lake-in-parallel", task_runner=dask_task_runner())
def load_lake_in_parallel(
    paths: list[str],
    nickname: str,
    lake: str | None = None,
    warehouse: str | None = None,
    timezone: str = "UTC",
    region: str = "us",
    config: str | None = None,
) -> dict[str, int]:
    """Load the export files under ``paths`` into the lake (``lake`` or ``CTSYNC_LAKE``) on the task
    runner's workers: one task per table's files, each staging its rows; then the flow records every
    worker's batch in the state database (``warehouse``, a DuckDB file) in one transaction and publishes
    them. A worker that fails fails the run with nothing recorded or published; a rerun adds nothing.
    Ends Failed, after recording what loaded, when files did not fully load (as ``ctsync load``)."""
    logger = get_run_logger()
    settings = load_settings()
    root = lake or settings.lake
    if not root:
        raise CtsyncError("name the lake: the flow's lake parameter or CTSYNC_LAKE (a folder or an s3://... URL)")
    use_storage_blocks(config)
    options = LoadOptions(
        nickname=nickname, timezone=timezone, region=region, workspace_region=settings.workspace_region
    )
    groups = plan_groups(paths)
    load = begin_parallel_load(warehouse or settings.warehouse, root, nickname)
    try:
        futures = stage_group_task.map(
            groups, unmapped(options), unmapped(root), unmapped(load.snapshot), unmapped(config)
        )
        wait(futures)
        failed = [
            (group, future.state)
            for group, future in zip(groups, futures, strict=True)
            if not future.state.is_completed()
        ]
        if failed:
            reasons = "; ".join(f"{group.route}: {state.message}" for group, state in failed)
            raise CtsyncError(
                f"{len(failed)} of {len(groups)} worker task(s) failed, so nothing of this load was recorded or "
                f"published (load again once fixed): {reasons}"
            )
        staged = [future.result() for future in futures]
        published = finish_parallel_load(load, staged)
    except BaseException:
        abandon_parallel_load(load)  # what the workers staged: nothing of it was recorded
        raise
    finally:
        load.close()
    summaries = [group.summary for group in staged]
    counts = {
        "workers' tasks": len(staged),
        "workers": len({group.worker for group in staged}),
        "batches published": len(published),
        "files": sum(summary.count("loaded") for summary in summaries),
        "files not loaded": sum(len(summary.problems) for summary in summaries),
        "rows": sum(summary.total("rows_loaded") for summary in summaries),
        "new rows": sum(summary.total("rows_inserted") for summary in summaries),
        "rejected": sum(summary.total("rows_rejected") for summary in summaries),
    }
    logger.info("parallel lake load of %s into %s: %s", nickname, root, counts)
    publish_counts("lake-load", f"Parallel lake load of {nickname}", counts)
    problems = [f"{problem.status} {problem.file.url}: {problem.error}" for s in summaries for problem in s.problems]
    if problems:
        raise IncompleteRun(
            f"{len(problems)} file(s) did not fully load (what did load is recorded and published): "
            + "; ".join(problems[:5]),
            counts,
        )
    return counts
