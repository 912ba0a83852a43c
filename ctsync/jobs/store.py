"""Export jobs in the warehouse: their stored definitions, statuses and runs.

State machine (CleverTap's): an export is PENDING when created, RUNNING while a run loads,
then DONE after a one-time run or back to PENDING after a recurring run (or a failed one);
STOPPED once a user stops it. DONE and STOPPED are final. Every run is a row of
``ctsync.export_runs``; a run whose process died is found by the next run and recorded as
``crashed``.

Edit rules (CleverTap's): when the settings file's definition differs from the stored one,
the edit is refused for one-time exports (whatever their status), for DONE and STOPPED
exports, and for a switch between events and profiles; other edits are stored and apply from
the next run.

Everything goes through SQLAlchemy Core, so the same code runs on DuckDB and PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Literal

import sqlalchemy as sa

from ctsync.errors import CtsyncError
from ctsync.jobs.definitions import DATA_TYPES, ExportJob, one_time_window
from ctsync.warehouse.connection import WarehouseTarget
from ctsync.warehouse.state import STATE_SCHEMA, cannot_open, ensure_state_schema, process_alive, state_engine


class ExportStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    STOPPED = "STOPPED"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CRASHED = "crashed"


TRANSITIONS: Mapping[ExportStatus, frozenset[ExportStatus]] = {
    ExportStatus.PENDING: frozenset({ExportStatus.RUNNING, ExportStatus.STOPPED}),
    ExportStatus.RUNNING: frozenset({ExportStatus.PENDING, ExportStatus.DONE, ExportStatus.STOPPED}),
    ExportStatus.DONE: frozenset(),
    ExportStatus.STOPPED: frozenset(),
}
"""Which status may follow which; DONE and STOPPED are final."""

PAGE_SIZES = (10, 20, 30, 40)
"""Items per page, as on CleverTap's Exports page (20 by default)."""
DEFAULT_PAGE_SIZE = 20

DEFAULT_STALE_AFTER = timedelta(hours=24)
"""A RUNNING run older than this is taken as crashed even when its process cannot be checked."""

_TOKEN = uuid.uuid4().hex[:16]
"""This process's identity next to its pid (pids are reused, e.g. in containers)."""

metadata = sa.MetaData(schema=STATE_SCHEMA)

export_jobs = sa.Table(
    "export_jobs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("data_type", sa.String(40), nullable=False),
    sa.Column("frequency", sa.String(20), nullable=False),  # one-time | recurring
    sa.Column("every_hours", sa.Integer),
    sa.Column("window_from", sa.Date),  # a one-time export's local dates, fixed when it is created
    sa.Column("window_to", sa.Date),
    sa.Column("definition", sa.Text, nullable=False),  # canonical JSON of the settings-file entry
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("last_run_id", sa.String(40)),
    sa.Column("last_run_started_at", sa.DateTime(timezone=True)),
    sa.Column("last_run_finished_at", sa.DateTime(timezone=True)),
    sa.Column("last_run_status", sa.String(20)),
)

export_runs = sa.Table(
    "export_runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("export_name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("data_type", sa.String(40), nullable=False),
    sa.Column("days_from", sa.Date),
    sa.Column("days_to", sa.Date),
    sa.Column("definition", sa.Text, nullable=False),  # the definition this run used
    sa.Column("runner_host", sa.String(255), nullable=False),
    sa.Column("runner_pid", sa.Integer, nullable=False),
    sa.Column("runner_token", sa.String(40), nullable=False),
    sa.Column("files_loaded", sa.Integer),
    sa.Column("files_skipped", sa.Integer),
    sa.Column("files_failed", sa.Integer),
    sa.Column("lines_read", sa.BigInteger),
    sa.Column("rows_loaded", sa.BigInteger),
    sa.Column("rows_inserted", sa.BigInteger),
    sa.Column("rows_rejected", sa.BigInteger),
    sa.Column("rows_skipped", sa.BigInteger),
    sa.Column("error", sa.Text),
)

_COUNT_COLUMNS = (
    "files_loaded",
    "files_skipped",
    "files_failed",
    "lines_read",
    "rows_loaded",
    "rows_inserted",
    "rows_rejected",
    "rows_skipped",
)


@dataclass(frozen=True)
class RunCounts:
    files_loaded: int = 0
    files_skipped: int = 0
    files_failed: int = 0
    lines_read: int = 0
    rows_loaded: int = 0
    rows_inserted: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0

    def as_row(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _COUNT_COLUMNS}


@dataclass(frozen=True)
class ExportRun:
    run_id: str
    export_name: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    data_type: str
    days: tuple[date, date] | None
    definition: dict[str, Any]
    runner_host: str
    runner_pid: int
    runner_token: str
    counts: RunCounts
    error: str | None


@dataclass(frozen=True)
class StoredExport:
    """An export as the warehouse knows it: the definition in force, its status and last run."""

    name: str
    data_type: str
    frequency: Literal["one-time", "recurring"]
    every_hours: int | None
    window: tuple[date, date] | None
    definition: dict[str, Any]
    status: ExportStatus
    created_at: datetime
    updated_at: datetime
    stopped_at: datetime | None
    last_run_id: str | None
    last_run_started_at: datetime | None
    last_run_finished_at: datetime | None
    last_run_status: RunStatus | None

    @property
    def job(self) -> ExportJob:
        return ExportJob.from_definition(self.definition)

    @property
    def kind(self) -> Literal["events", "profiles"]:
        return "profiles" if self.data_type == "user_profiles" else "events"

    def due_at(self) -> datetime | None:
        """When this export should run next (None: never again, or not until it is PENDING)."""
        if self.status is not ExportStatus.PENDING:
            return None
        if self.every_hours is None or self.last_run_started_at is None:
            return self.created_at
        if self.last_run_status is RunStatus.CRASHED:
            return self.last_run_started_at
        return self.last_run_started_at + timedelta(hours=self.every_hours)

    def is_due(self, now: datetime) -> bool:
        """PENDING one-time exports are due; recurring ones once every_hours have passed since the last run
        started (or right away when it never ran or its last run crashed)."""
        due = self.due_at()
        return due is not None and now >= due


@dataclass(frozen=True)
class SyncProblem:
    export: str
    message: str


@dataclass(frozen=True)
class SyncPlan:
    """What reconciling the settings file with the stored exports does."""

    created: tuple[tuple[ExportJob, tuple[date, date] | None], ...] = ()
    edited: tuple[tuple[ExportJob, tuple[str, ...]], ...] = ()
    """Allowed edits, with the settings that changed."""
    problems: tuple[SyncProblem, ...] = ()

    def problem_for(self, name: str) -> str | None:
        for problem in self.problems:
            if problem.export == name:
                return problem.message
        return None


@dataclass(frozen=True)
class ExportFilter:
    """``exports list`` filters; None means any."""

    data_type: str | None = None
    """A data type, or ``events`` / ``profiles``."""
    status: ExportStatus | None = None
    frequency: Literal["one-time", "recurring"] | None = None
    exported_from: date | None = None
    """The last run started on or after this (UTC) date."""
    exported_to: date | None = None
    """The last run started on or before this (UTC) date."""


@dataclass(frozen=True)
class ExportPage:
    exports: tuple[StoredExport, ...]
    total: int
    """Exports matching the filters, over all pages."""
    page: int
    pages: int
    per_page: int
    all_exports: int = 0
    """Exports stored, before filtering."""
    filters: ExportFilter = field(default_factory=ExportFilter)


def plan_sync(jobs: Sequence[ExportJob], stored: Mapping[str, StoredExport], now: datetime) -> SyncPlan:
    """Compare the settings file's exports with the stored ones under CleverTap's rules."""
    created: list[tuple[ExportJob, tuple[date, date] | None]] = []
    edited: list[tuple[ExportJob, tuple[str, ...]]] = []
    problems: list[SyncProblem] = []
    for job in jobs:
        current = stored.get(job.name)
        if current is None:
            if job.frequency.is_one_time:
                try:
                    window = one_time_window(job, now)
                except CtsyncError as exc:
                    problems.append(SyncProblem(job.name, str(exc)))
                    continue
                created.append((job, window))
            else:
                created.append((job, None))
            continue
        changed = changed_settings(current.definition, job.definition())
        if not changed:
            continue
        refusal = edit_refusal(current, job, changed)
        if refusal is None:
            edited.append((job, changed))
        else:
            problems.append(SyncProblem(job.name, refusal))
    return SyncPlan(tuple(created), tuple(edited), tuple(problems))


def changed_settings(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> tuple[str, ...]:
    keys = sorted(set(stored) | set(wanted))
    return tuple(key for key in keys if _json(stored.get(key)) != _json(wanted.get(key)))


def edit_refusal(current: StoredExport, job: ExportJob, changed: Sequence[str]) -> str | None:
    """Why CleverTap would refuse this edit (None: allowed, it applies from the next run)."""
    what = f"(changed: {', '.join(changed)})"
    fix = f"put its stored definition back (see 'ctsync exports show {job.name}') or add a new export with another name"
    if current.kind != job.kind:
        return (
            f"export {job.name!r}: cannot switch between events and profiles (data_type {current.data_type} -> "
            f"{job.data_type}); CleverTap never changes an export from events to profiles or back. Set data_type "
            f"back to {current.data_type}, or stop this export and add a new one with another name"
        )
    if current.status in (ExportStatus.DONE, ExportStatus.STOPPED):
        return f"export {job.name!r} is {current.status} and cannot be edited {what}; {fix}"
    if current.frequency == "one-time":
        return f"export {job.name!r} is a one-time export and cannot be edited, whatever its status {what}; {fix}"
    if job.frequency.is_one_time:
        return (
            f"export {job.name!r}: a recurring export cannot become a one-time export {what}; stop it and add a "
            "one-time export with another name"
        )
    return None


class ExportStore:
    """The ``ctsync.export_jobs`` and ``ctsync.export_runs`` tables of one warehouse."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._ready = False

    @classmethod
    def open(cls, warehouse: str | WarehouseTarget) -> ExportStore:
        return cls(state_engine(warehouse))

    # -- reading ---------------------------------------------------------------------------

    def exports(self) -> dict[str, StoredExport]:
        """Every stored export by name (none when the tables do not exist yet)."""
        with self._connect() as connection:
            if not self._has_tables(connection):
                return {}
            rows = connection.execute(sa.select(export_jobs).order_by(export_jobs.c.name)).mappings().all()
        return {row["name"]: _stored_export(row) for row in rows}

    def get(self, name: str) -> StoredExport:
        with self._connect() as connection:
            row = None
            if self._has_tables(connection):
                row = connection.execute(sa.select(export_jobs).where(export_jobs.c.name == name)).mappings().first()
        if row is None:
            raise CtsyncError(_unknown(name))
        return _stored_export(row)

    def runs(self, name: str | None = None, *, limit: int | None = 10) -> list[ExportRun]:
        """Runs, newest first (of one export when ``name`` is given)."""
        query = sa.select(export_runs).order_by(export_runs.c.started_at.desc(), export_runs.c.run_id)
        if name is not None:
            query = query.where(export_runs.c.export_name == name)
        if limit is not None:
            query = query.limit(limit)
        with self._connect() as connection:
            if not self._has_tables(connection):
                return []
            rows = connection.execute(query).mappings().all()
        return [_export_run(row) for row in rows]

    def runs_by_id(self, run_ids: Sequence[str]) -> dict[str, ExportRun]:
        wanted = sorted(set(run_ids))
        if not wanted:
            return {}
        with self._connect() as connection:
            if not self._has_tables(connection):
                return {}
            rows = connection.execute(sa.select(export_runs).where(export_runs.c.run_id.in_(wanted))).mappings().all()
        return {row["run_id"]: _export_run(row) for row in rows}

    def list_page(
        self, filters: ExportFilter | None = None, *, page: int = 1, per_page: int = DEFAULT_PAGE_SIZE
    ) -> ExportPage:
        """A page of exports, newest first, as on CleverTap's Exports page."""
        filters = filters or ExportFilter()
        if per_page not in PAGE_SIZES:
            raise CtsyncError(f"items per page must be 10, 20, 30 or 40 (CleverTap's choices), not {per_page}")
        if page < 1:
            raise CtsyncError(f"the page number starts at 1, not {page}")
        conditions = _filter_conditions(filters)
        with self._connect() as connection:
            if not self._has_tables(connection):
                return ExportPage((), 0, 1, 1, per_page, 0, filters)
            all_exports = connection.execute(sa.select(sa.func.count()).select_from(export_jobs)).scalar_one()
            total = connection.execute(
                sa.select(sa.func.count()).select_from(export_jobs).where(*conditions)
            ).scalar_one()
            pages = max(1, math.ceil(total / per_page))
            if page > pages:
                raise CtsyncError(
                    f"there is no page {page}: {total} export(s) match at {per_page} per page, "
                    f"so the last page is {pages}"
                )
            rows = (
                connection.execute(
                    sa.select(export_jobs)
                    .where(*conditions)
                    .order_by(export_jobs.c.created_at.desc(), export_jobs.c.name)
                    .limit(per_page)
                    .offset((page - 1) * per_page)
                )
                .mappings()
                .all()
            )
        return ExportPage(
            tuple(_stored_export(row) for row in rows), int(total), page, pages, per_page, int(all_exports), filters
        )

    # -- changing --------------------------------------------------------------------------

    def plan(self, jobs: Sequence[ExportJob], now: datetime) -> SyncPlan:
        """What ``sync`` would do, without writing anything."""
        return plan_sync(jobs, self.exports(), now)

    def sync(self, jobs: Sequence[ExportJob], now: datetime) -> SyncPlan:
        """Register new exports (PENDING) and store allowed edits; refused edits come back as problems."""
        try:
            with self._begin() as connection:
                self._ensure(connection)
                rows = connection.execute(sa.select(export_jobs)).mappings().all()
                plan = plan_sync(jobs, {row["name"]: _stored_export(row) for row in rows}, now)
                for job, window in plan.created:
                    connection.execute(
                        export_jobs.insert().values(
                            name=job.name,
                            status=ExportStatus.PENDING.value,
                            created_at=now,
                            updated_at=now,
                            window_from=window[0] if window else None,
                            window_to=window[1] if window else None,
                            **_definition_columns(job),
                        )
                    )
                for job, _changed in plan.edited:
                    connection.execute(
                        export_jobs.update()
                        .where(
                            export_jobs.c.name == job.name,
                            export_jobs.c.status.in_([ExportStatus.PENDING.value, ExportStatus.RUNNING.value]),
                        )
                        .values(updated_at=now, **_definition_columns(job))
                    )
        except sa.exc.IntegrityError:
            raise CtsyncError(
                "another ctsync process registered the same exports at the same moment; run the command again"
            ) from None
        return plan

    def stop(self, name: str, now: datetime) -> bool:
        """STOPPED from PENDING or RUNNING; False when it was already STOPPED, CtsyncError when DONE."""
        current = self.get(name)
        if current.status is ExportStatus.STOPPED:
            return False
        if current.status is ExportStatus.DONE:
            raise CtsyncError(f"export {name!r} is DONE (its one-time run finished); there is nothing to stop")
        with self._begin() as connection:
            result = connection.execute(
                export_jobs.update()
                .where(export_jobs.c.name == name, export_jobs.c.status == current.status.value)
                .values(status=ExportStatus.STOPPED.value, stopped_at=now, updated_at=now)
            )
        if result.rowcount != 1:
            return self.stop(name, now)  # its status moved meanwhile: decide again
        return True

    def start_run(self, name: str, now: datetime, days: tuple[date, date] | None) -> ExportRun:
        """PENDING -> RUNNING and a ``running`` run row, in one transaction; CtsyncError when it may not run."""
        with self._begin() as connection:
            self._ensure(connection)
            row = connection.execute(sa.select(export_jobs).where(export_jobs.c.name == name)).mappings().first()
            if row is None:
                raise CtsyncError(_unknown(name))
            current = _stored_export(row)
            if current.status is not ExportStatus.PENDING:
                raise CtsyncError(_cannot_run(current))
            run = ExportRun(
                run_id=uuid.uuid4().hex,
                export_name=name,
                status=RunStatus.RUNNING,
                started_at=now,
                finished_at=None,
                data_type=current.data_type,
                days=days,
                definition=current.definition,
                runner_host=socket.gethostname(),
                runner_pid=os.getpid(),
                runner_token=_TOKEN,
                counts=RunCounts(),
                error=None,
            )
            claimed = connection.execute(
                export_jobs.update()
                .where(
                    export_jobs.c.name == name,
                    export_jobs.c.status == ExportStatus.PENDING.value,
                    export_jobs.c.definition == row["definition"],
                )
                .values(
                    status=ExportStatus.RUNNING.value,
                    last_run_id=run.run_id,
                    last_run_started_at=now,
                    last_run_finished_at=None,
                    last_run_status=RunStatus.RUNNING.value,
                )
            )
            if claimed.rowcount != 1:
                raise CtsyncError(f"export {name!r} changed while its run was starting; run it again")
            connection.execute(
                export_runs.insert().values(
                    run_id=run.run_id,
                    export_name=name,
                    status=run.status.value,
                    started_at=now,
                    data_type=run.data_type,
                    days_from=days[0] if days else None,
                    days_to=days[1] if days else None,
                    definition=_json(run.definition),
                    runner_host=run.runner_host,
                    runner_pid=run.runner_pid,
                    runner_token=run.runner_token,
                )
            )
        return run

    def finish_run(
        self,
        run: ExportRun,
        now: datetime,
        status: RunStatus,
        counts: RunCounts,
        error: str | None = None,
    ) -> ExportStatus:
        """Record the run's outcome and move the export: DONE after a successful one-time run,
        PENDING otherwise (STOPPED stays STOPPED). Returns the export's status."""
        if status is RunStatus.RUNNING:
            raise ValueError("a finished run cannot be 'running'")
        with self._begin() as connection:
            connection.execute(
                export_runs.update()
                .where(export_runs.c.run_id == run.run_id)
                .values(status=status.value, finished_at=now, error=error, **counts.as_row())
            )
            row = connection.execute(
                sa.select(export_jobs.c.frequency, export_jobs.c.status).where(export_jobs.c.name == run.export_name)
            ).first()
            if row is None:
                return ExportStatus.STOPPED
            frequency, current = str(row[0]), ExportStatus(row[1])
            target = current
            if current is ExportStatus.RUNNING:
                one_time_done = frequency == "one-time" and status is RunStatus.SUCCEEDED
                target = ExportStatus.DONE if one_time_done else ExportStatus.PENDING
            values: dict[str, Any] = {"last_run_finished_at": now, "last_run_status": status.value}
            if target is not current:
                values["status"] = target.value
            connection.execute(
                export_jobs.update()
                .where(export_jobs.c.name == run.export_name, export_jobs.c.last_run_id == run.run_id)
                .values(**values)
            )
        return target

    def recover_crashed(self, now: datetime, stale_after: timedelta = DEFAULT_STALE_AFTER) -> list[ExportRun]:
        """Record RUNNING runs whose process is gone (or older than ``stale_after``) as crashed.

        Their exports go back to PENDING (a STOPPED export stays STOPPED) so the next run loads
        what the crashed one did not finish; the loader reloads files it left half-done.
        """
        with self._connect() as connection:
            if not self._has_tables(connection):
                return []
            rows = connection.execute(sa.select(export_runs).where(export_runs.c.status == RunStatus.RUNNING.value))
            running = [_export_run(row) for row in rows.mappings().all()]
        crashed = [run for run in running if _is_abandoned(run, now, stale_after)]
        recorded = []
        for run in crashed:
            error = (
                f"the run stopped without recording its result (process {run.runner_pid} on {run.runner_host} "
                f"ended, or no word for over {_hours(stale_after)}); found at {now:%Y-%m-%d %H:%M} UTC. "
                "Files it did not finish load again on the next run"
            )
            with self._begin() as connection:
                updated = connection.execute(
                    export_runs.update()
                    .where(export_runs.c.run_id == run.run_id, export_runs.c.status == RunStatus.RUNNING.value)
                    .values(status=RunStatus.CRASHED.value, finished_at=now, error=error)
                )
                if updated.rowcount != 1:
                    continue
                connection.execute(
                    export_jobs.update()
                    .where(export_jobs.c.name == run.export_name, export_jobs.c.last_run_id == run.run_id)
                    .values(last_run_finished_at=now, last_run_status=RunStatus.CRASHED.value)
                )
                connection.execute(
                    export_jobs.update()
                    .where(
                        export_jobs.c.name == run.export_name,
                        export_jobs.c.last_run_id == run.run_id,
                        export_jobs.c.status == ExportStatus.RUNNING.value,
                    )
                    .values(status=ExportStatus.PENDING.value)
                )
            recorded.append(replace(run, status=RunStatus.CRASHED, finished_at=now, error=error))
        return recorded

    def ensure_tables(self) -> None:
        if not self._ready:
            with self._begin() as connection:
                self._ensure(connection)

    def _ensure(self, connection: sa.Connection) -> None:
        if not self._ready:
            ensure_state_schema(connection)
            metadata.create_all(connection, checkfirst=True)
            self._ready = True

    # -- helpers ---------------------------------------------------------------------------

    def _has_tables(self, connection: sa.Connection) -> bool:
        if self._ready:
            return True
        inspector = sa.inspect(connection)
        present = all(inspector.has_table(table.name, schema=STATE_SCHEMA) for table in metadata.sorted_tables)
        self._ready = present
        return present

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise cannot_open("warehouse for export state", exc) from exc

    def _begin(self) -> _Transaction:
        return _Transaction(self._connect())


class _Transaction:
    """``with store._begin() as connection``: commit on success, roll back on error, always close."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sa.Connection:
        self.connection.begin()
        return self.connection

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        try:
            if exc_type is None and self.connection.in_transaction():
                self.connection.commit()
            elif self.connection.in_transaction():
                self.connection.rollback()
        finally:
            self.connection.close()


def _unknown(name: str) -> str:
    return (
        f"no export named {name!r} in the warehouse; add it to the exports: section of the settings file "
        "(it is registered by the next 'ctsync exports' command)"
    )


def _cannot_run(current: StoredExport) -> str:
    name = current.name
    if current.status is ExportStatus.DONE:
        return (
            f"export {name!r} is DONE: a one-time export runs once; add a new export with another name to export again"
        )
    if current.status is ExportStatus.STOPPED:
        return f"export {name!r} is STOPPED and never runs again; add a new export with another name"
    started = f"{current.last_run_started_at:%Y-%m-%d %H:%M} UTC" if current.last_run_started_at else "?"
    return (
        f"export {name!r} is already RUNNING (run started {started}); wait for it to finish. A run whose "
        "process died is recorded as crashed by the next run"
    )


def _filter_conditions(filters: ExportFilter) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if filters.data_type is not None:
        kind = filters.data_type.strip().lower()
        if kind == "profiles":
            conditions.append(export_jobs.c.data_type == "user_profiles")
        elif kind == "events":
            conditions.append(export_jobs.c.data_type != "user_profiles")
        elif kind in DATA_TYPES:
            conditions.append(export_jobs.c.data_type == kind)
        else:
            raise CtsyncError(
                f"--type {filters.data_type!r} is not a type; use events, profiles or a data type "
                f"({', '.join(DATA_TYPES)})"
            )
    if filters.status is not None:
        conditions.append(export_jobs.c.status == filters.status.value)
    if filters.frequency is not None:
        conditions.append(export_jobs.c.frequency == filters.frequency)
    if filters.exported_from and filters.exported_to and filters.exported_from > filters.exported_to:
        raise CtsyncError(
            f"--exported-from {filters.exported_from} is after --exported-to {filters.exported_to}; swap them"
        )
    if filters.exported_from is not None:
        start = datetime.combine(filters.exported_from, time(), tzinfo=UTC)
        conditions.append(export_jobs.c.last_run_started_at >= start)
    if filters.exported_to is not None:
        end = datetime.combine(filters.exported_to + timedelta(days=1), time(), tzinfo=UTC)
        conditions.append(export_jobs.c.last_run_started_at < end)
    return conditions


def _definition_columns(job: ExportJob) -> dict[str, Any]:
    return {
        "data_type": job.data_type,
        "frequency": job.frequency.kind,
        "every_hours": job.frequency.every_hours,
        "definition": _json(job.definition()),
    }


def _stored_export(row: sa.RowMapping) -> StoredExport:
    window = (row["window_from"], row["window_to"]) if row["window_from"] is not None else None
    frequency: Literal["one-time", "recurring"] = "one-time" if row["frequency"] == "one-time" else "recurring"
    return StoredExport(
        name=row["name"],
        data_type=row["data_type"],
        frequency=frequency,
        every_hours=row["every_hours"],
        window=window,
        definition=json.loads(row["definition"]),
        status=ExportStatus(row["status"]),
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
        stopped_at=_utc_or_none(row["stopped_at"]),
        last_run_id=row["last_run_id"],
        last_run_started_at=_utc_or_none(row["last_run_started_at"]),
        last_run_finished_at=_utc_or_none(row["last_run_finished_at"]),
        last_run_status=RunStatus(row["last_run_status"]) if row["last_run_status"] else None,
    )


def _export_run(row: sa.RowMapping) -> ExportRun:
    days = (row["days_from"], row["days_to"]) if row["days_from"] is not None else None
    return ExportRun(
        run_id=row["run_id"],
        export_name=row["export_name"],
        status=RunStatus(row["status"]),
        started_at=_utc(row["started_at"]),
        finished_at=_utc_or_none(row["finished_at"]),
        data_type=row["data_type"],
        days=days,
        definition=json.loads(row["definition"]),
        runner_host=row["runner_host"],
        runner_pid=int(row["runner_pid"]),
        runner_token=row["runner_token"],
        counts=RunCounts(**{name: int(row[name] or 0) for name in _COUNT_COLUMNS}),
        error=row["error"],
    )


def _is_abandoned(run: ExportRun, now: datetime, stale_after: timedelta) -> bool:
    if now - run.started_at > stale_after:
        return True
    if run.runner_host != socket.gethostname():
        return False  # another machine: only the age tells
    if run.runner_pid == os.getpid():
        return run.runner_token != _TOKEN  # same pid, another process (pid reuse)
    return not process_alive(run.runner_pid)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} hours"


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
