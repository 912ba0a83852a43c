"""Running export jobs: resolve the job, check it may run, load exactly its data, record the run.

``run_export`` runs one export now; ``run_due_exports`` runs every export that is due (one-time
exports still PENDING, recurring ones whose interval has passed). Both reconcile the settings
file with the stored exports first (new exports are registered, allowed edits stored,
forbidden ones refused) and record runs that crashed earlier. Plain functions for the CLI
and for flows; no Prefect here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.exports.catalog import EventCatalog, find_event_catalog, load_event_catalog
from ctsync.exports.files import FileKind
from ctsync.jobs.definitions import ExportJob, ExportsFile, read_exports_file
from ctsync.jobs.store import (
    DEFAULT_STALE_AFTER,
    ExportRun,
    ExportStatus,
    ExportStore,
    RunCounts,
    RunStatus,
    StoredExport,
    SyncPlan,
    plan_sync,
)
from ctsync.settings import load_settings
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.events import IdentifierPriority
from ctsync.warehouse.loader import LoadOptions, LoadSummary, ProgressCallback, load_export_files

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExportLoader(Protocol):
    """``load_export_files``'s signature (tests pass a stand-in)."""

    def __call__(
        self,
        paths: Sequence[str],
        options: LoadOptions,
        *,
        warehouse: str,
        progress: ProgressCallback | None = None,
        on_start: ProgressCallback | None = None,
        lake: str | None = None,
    ) -> LoadSummary: ...


@dataclass(frozen=True)
class ExportEnvironment:
    """Where the settings file and warehouse are, and what a run checks against."""

    config: Path
    warehouse: str
    workspace_region: str
    catalog: EventCatalog
    lake: str | None = None
    """A lake root (``CTSYNC_LAKE``): the tables go there as Parquet, ``warehouse`` is its state database."""

    @classmethod
    def resolve(
        cls,
        config: Path | str | None = None,
        warehouse: str | None = None,
        workspace_region: str | None = None,
        catalog: EventCatalog | None = None,
        lake: str | None = None,
    ) -> ExportEnvironment:
        """Fill what is not given from the settings (``CTSYNC_*``); the catalog is the project's,
        found from the settings file's folder."""
        settings = load_settings()
        config_path = Path(config if config is not None else settings.config)
        if catalog is None:
            catalog = load_event_catalog(find_event_catalog(config_path.resolve().parent))
        return cls(
            config=config_path,
            warehouse=warehouse if warehouse is not None else settings.warehouse,
            workspace_region=workspace_region if workspace_region is not None else settings.workspace_region,
            catalog=catalog,
            lake=lake if lake is not None else settings.lake,
        )


@dataclass(frozen=True)
class ExportRunResult:
    """One run of one export, with the loader's counts."""

    export: str
    run_id: str
    data_type: str
    status: RunStatus
    """succeeded, or failed (the loader raised, or some files failed)."""
    export_status: ExportStatus
    """The export's status after the run: DONE, PENDING or STOPPED."""
    started_at: datetime
    finished_at: datetime
    days: tuple[date, date] | None
    counts: RunCounts
    error: str | None = None
    summary: LoadSummary | None = None
    retryable: bool = False
    """A failed run that another attempt may fix: the warehouse was busy, or files could not be read
    (status ``failed``). Never a run that failed only on unsupported, truncated or corrupt files, or on a
    problem the user must fix (region, location): those fail the same way again."""

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED


@dataclass(frozen=True)
class DueExportsResult:
    results: tuple[ExportRunResult, ...]
    not_due: tuple[str, ...]
    problems: tuple[str, ...]
    """Exports that could not run: a refused edit, a one-time window out of range, a lost race."""
    crashed_runs: tuple[ExportRun, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and all(result.ok for result in self.results)


@dataclass(frozen=True)
class SyncedExports:
    """The settings file reconciled with the warehouse (see ``sync_exports``)."""

    environment: ExportEnvironment
    exports: ExportsFile | None
    """None when the settings file does not exist (then only stored exports are known)."""
    store: ExportStore
    plan: SyncPlan
    crashed_runs: tuple[ExportRun, ...]


def events_for(job: ExportJob, catalog: EventCatalog) -> frozenset[str] | None:
    """The event names an export loads (None: every event in the files)."""
    if job.data_type == "all_system_events":
        return catalog.system_events
    if job.data_type == "engagement_events":
        return catalog.engagement_events
    if job.data_type == "selected_events":
        return frozenset(job.events or ())
    return None  # all_events; user_profiles loads profile files only (see ``kinds_for``)


def kinds_for(job: ExportJob) -> frozenset[FileKind]:
    """Which export files a job reads: profile files for user_profiles, event files otherwise."""
    return frozenset({FileKind.PROFILES if job.kind == "profiles" else FileKind.EVENTS})


def load_options_for(
    job: ExportJob, window: tuple[date, date] | None, workspace_region: str, catalog: EventCatalog
) -> LoadOptions:
    """The loader options that load exactly what the export's data type and window say."""
    return LoadOptions(
        nickname=job.nickname,
        timezone=job.timezone,
        region=job.region,
        workspace_region=workspace_region,
        identifiers=IdentifierPriority(user_id=tuple(job.user_id_fields), anonymous_id=job.anonymous_id_field),
        export_job=job.name,
        events=events_for(job, catalog),
        days=window if job.kind == "events" else None,
        kinds=kinds_for(job),
    )


def sync_exports(
    environment: ExportEnvironment,
    *,
    clock: Clock = utc_now,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    require_config: bool = True,
) -> SyncedExports:
    """Read the settings file (every problem at once), register new exports, store allowed edits
    and record crashed runs. With ``require_config=False`` a missing settings file is allowed."""
    exports: ExportsFile | None = None
    if require_config or environment.config.exists():
        exports = read_exports_file(environment.config, environment.catalog)
        exports.raise_for_problems()
    store = ExportStore.open(environment.warehouse)
    now = clock()
    plan = store.sync(exports.jobs, now) if exports is not None else SyncPlan()
    crashed = store.recover_crashed(now, stale_after)
    return SyncedExports(environment, exports, store, plan, tuple(crashed))


def run_export(
    name: str,
    *,
    config: Path | str | None = None,
    warehouse: str | None = None,
    workspace_region: str | None = None,
    catalog: EventCatalog | None = None,
    clock: Clock = utc_now,
    loader: ExportLoader = load_export_files,
    progress: ProgressCallback | None = None,
    on_start: ProgressCallback | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    lake: str | None = None,
) -> ExportRunResult:
    """Run the export ``name`` now, whether or not it is due (into ``lake`` when given or ``CTSYNC_LAKE`` set).

    CtsyncError when it cannot start (unknown, DONE, STOPPED, already running, a refused
    edit); a run that started always comes back as a result, failed or not.
    """
    environment = ExportEnvironment.resolve(config, warehouse, workspace_region, catalog, lake)
    synced = sync_exports(environment, clock=clock, stale_after=stale_after)
    assert synced.exports is not None
    synced.exports.job(name)
    problem = synced.plan.problem_for(name)
    if problem is not None:
        raise CtsyncError(problem)
    return _run(synced.store, synced.store.get(name), environment, clock, loader, progress, on_start)


def run_due_exports(
    *,
    config: Path | str | None = None,
    warehouse: str | None = None,
    workspace_region: str | None = None,
    catalog: EventCatalog | None = None,
    clock: Clock = utc_now,
    loader: ExportLoader = load_export_files,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    lake: str | None = None,
) -> DueExportsResult:
    """Run, one after another in settings-file order, every export that is due now."""
    environment = ExportEnvironment.resolve(config, warehouse, workspace_region, catalog, lake)
    synced = sync_exports(environment, clock=clock, stale_after=stale_after)
    assert synced.exports is not None
    now = clock()
    stored = synced.store.exports()
    results: list[ExportRunResult] = []
    not_due: list[str] = []
    problems = [problem.message for problem in synced.plan.problems]
    for job in synced.exports.jobs:
        export = stored.get(job.name)
        if export is None or synced.plan.problem_for(job.name) is not None:
            continue
        if not export.is_due(now):
            not_due.append(job.name)
            continue
        try:
            results.append(_run(synced.store, export, environment, clock, loader, None, None))
        except CtsyncError as exc:  # e.g. another process started it a moment ago
            problems.append(str(exc))
    return DueExportsResult(tuple(results), tuple(not_due), tuple(problems), synced.crashed_runs)


def stop_export(
    name: str,
    *,
    config: Path | str | None = None,
    warehouse: str | None = None,
    catalog: EventCatalog | None = None,
    clock: Clock = utc_now,
) -> bool:
    """STOPPED for good; False when it already was. A running load finishes, then the export stays STOPPED."""
    environment = ExportEnvironment.resolve(config, warehouse, None, catalog)
    synced = sync_exports(environment, clock=clock, require_config=False)
    return synced.store.stop(name, clock())


def validate_exports(environment: ExportEnvironment, *, clock: Clock = utc_now) -> tuple[ExportsFile, list[str]]:
    """Every problem of the settings file's exports, without changing anything.

    Checks the file, then (when the warehouse exists) CleverTap's edit rules against the
    stored exports and the 60-day window of new one-time exports, and each export's region
    against the workspace region.
    """
    exports = read_exports_file(environment.config, environment.catalog)
    problems = list(exports.problems)
    now = clock()
    target = parse_warehouse(environment.warehouse)
    if target.kind == "duckdb" and not os.path.exists(target.location):
        plan = plan_sync(exports.jobs, {}, now)  # nothing stored yet: every export is new
    else:
        plan = ExportStore.open(target).plan(exports.jobs, now)
    problems.extend(problem.message for problem in plan.problems)
    for job in exports.jobs:
        if job.region != environment.workspace_region:
            problems.append(
                f"export {job.name!r}: region {job.region} differs from the workspace region "
                f"{environment.workspace_region} (CTSYNC_WORKSPACE_REGION); its runs will be refused, as Segment "
                "drops data from another region"
            )
    return exports, problems


def _run(
    store: ExportStore,
    export: StoredExport,
    environment: ExportEnvironment,
    clock: Clock,
    loader: ExportLoader,
    progress: ProgressCallback | None,
    on_start: ProgressCallback | None,
) -> ExportRunResult:
    job = export.job  # the stored definition: edits apply from the next run
    days = export.window if job.kind == "events" else None
    run = store.start_run(export.name, clock(), days)
    summary: LoadSummary | None = None
    error: str | None = None
    try:
        summary = load_job(job, days, environment, loader=loader, progress=progress, on_start=on_start)
    except CtsyncError as exc:  # the user can fix it (region, location, ...), or the warehouse is busy: a failed run
        counts, outcome, error, retryable = RunCounts(), RunStatus.FAILED, str(exc), isinstance(exc, WarehouseBusy)
    except BaseException as exc:
        store.finish_run(run, clock(), RunStatus.FAILED, RunCounts(), f"{type(exc).__name__}: {exc}")
        raise
    else:
        counts, error = counts_of(summary), load_problems(summary)
        outcome = RunStatus.FAILED if error else RunStatus.SUCCEEDED
        retryable = any(problem.status == "failed" for problem in summary.problems)
    finished = clock()
    export_status = store.finish_run(run, finished, outcome, counts, error)
    return ExportRunResult(
        export=export.name,
        run_id=run.run_id,
        data_type=run.data_type,
        status=outcome,
        export_status=export_status,
        started_at=run.started_at,
        finished_at=finished,
        days=days,
        counts=counts,
        error=error,
        summary=summary,
        retryable=retryable,
    )


def load_job(
    job: ExportJob,
    window: tuple[date, date] | None,
    environment: ExportEnvironment,
    *,
    loader: ExportLoader = load_export_files,
    progress: ProgressCallback | None = None,
    on_start: ProgressCallback | None = None,
) -> LoadSummary:
    """Load exactly what ``job`` defines for ``window``: the one load path of scheduled runs and backfills.

    The job's location is read from the settings file's folder when relative (wherever ctsync runs);
    its data type, identifiers and window become the loader's options.
    """
    options = load_options_for(job, window, environment.workspace_region, environment.catalog)
    paths = [location_path(job.location, environment.config)]
    if environment.lake:  # only then: a loader that knows no lake is still a loader
        return loader(
            paths, options, warehouse=environment.warehouse, lake=environment.lake, progress=progress, on_start=on_start
        )
    return loader(paths, options, warehouse=environment.warehouse, progress=progress, on_start=on_start)


def load_problems(summary: LoadSummary) -> str | None:
    """Why a load did not fully succeed (files failed, unsupported, truncated or corrupt); None when it did."""
    if not summary.problems:
        return None
    first = summary.problems[0]
    return (
        f"{len(summary.problems)} file(s) not fully loaded (failed, unsupported, truncated or corrupt); "
        f"first: {first.status} {first.file.url}: {first.error}"
    )


def location_path(location: str, config: Path) -> str:
    """A relative local location is read from the settings file's folder, wherever ctsync runs."""
    if "://" in location:
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else config.resolve().parent / path)


def counts_of(summary: LoadSummary) -> RunCounts:
    return RunCounts(
        files_loaded=summary.count("loaded"),
        files_skipped=summary.count("skipped"),
        files_failed=len(summary.problems),
        lines_read=summary.total("lines_read"),
        rows_loaded=summary.total("rows_loaded"),
        rows_inserted=summary.total("rows_inserted"),
        rows_rejected=summary.total("rows_rejected"),
        rows_skipped=summary.total("rows_skipped"),
    )
