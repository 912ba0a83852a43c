"""``ctsync status``: recent loads, sync runs and outbox contents, read from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from ctsync.engage.state import (
    LOCKS,
    OUTBOX,
    connect,
    sync_runs,
)
from ctsync.engage.summary import ComputationCounts
from ctsync.engage.tally import read_run_computations
from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import STATE_SCHEMA, state_engine


@dataclass(frozen=True)
class LoadStatus:
    schema: str
    load_id: str
    started_at: datetime | None
    finished_at: datetime | None
    files: int
    loaded: int
    failed: int
    interrupted: int
    rows_inserted: int
    rows_rejected: int


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    destination: str
    destination_kind: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    dry_run: bool
    entered: int
    exited: int
    traits_changed: int
    sent: int
    rejected: int
    retried: int
    failed: int
    superseded: int
    pending: int
    retired_audiences: int
    retired_traits: int
    error: str | None
    pruned: int = 0
    """Absent (0) in runs recorded before the column existed."""
    values_left_out: int = 0
    """Values a destination would refuse, left out of their records (absent in older runs: 0)."""


@dataclass(frozen=True)
class OutboxStatus:
    destination: str
    pending: int
    rejected: int
    locked_by: str | None


@dataclass(frozen=True)
class StatusReport:
    warehouse: str
    loads: list[LoadStatus]
    runs: list[RunStatus]
    outbox: list[OutboxStatus]
    computations: dict[str, list[ComputationCounts]] = field(default_factory=dict)
    """The newest run of each destination in ``runs``: its counts per audience and trait, by run id."""


def recent_status(warehouse: str, *, limit: int = 10, wait_seconds: float = 5.0) -> StatusReport:
    """Recent loads (from every source schema's ``_loads``), recent sync runs and what is waiting."""
    target = parse_warehouse(warehouse)
    if target.kind == "duckdb" and not Path(target.location).is_file():
        raise CtsyncError(f"no warehouse at {target.location}: nothing has been loaded yet")
    engine = state_engine(target)
    try:
        conn = connect(engine, wait_seconds=wait_seconds)
        try:
            with conn.begin():
                runs = _recent_runs(conn, limit)
                return StatusReport(
                    warehouse=target.describe(),
                    loads=_recent_loads(conn, limit),
                    runs=runs,
                    outbox=_outbox_status(conn),
                    computations=_newest_run_computations(conn, runs),
                )
        finally:
            conn.close()
    finally:
        engine.dispose()


def _tables(conn: sa.Connection, name: str) -> list[str]:
    """Schemas that have a table called ``name``."""
    rows = conn.execute(
        sa.text("select distinct table_schema from information_schema.tables where table_name = :name order by 1"),
        {"name": name},
    ).all()
    return [str(row[0]) for row in rows]


def _recent_loads(conn: sa.Connection, limit: int) -> list[LoadStatus]:
    loads: list[LoadStatus] = []
    for schema in _tables(conn, "_loads"):
        quoted = '"' + schema.replace('"', '""') + '"'
        rows = conn.execute(
            sa.text(
                f"""
                select load_id, min(started_at) as started_at, max(finished_at) as finished_at,
                       count(*) as files,
                       sum(case when status = 'loaded' then 1 else 0 end) as loaded,
                       sum(case when status in ('failed', 'unsupported', 'truncated', 'corrupt') then 1 else 0 end)
                           as failed,
                       sum(case when status = 'interrupted' then 1 else 0 end) as interrupted,
                       sum(coalesce(rows_inserted, 0)) as rows_inserted,
                       sum(coalesce(rows_rejected, 0)) as rows_rejected
                from {quoted}._loads
                group by load_id
                order by min(started_at) desc
                limit :limit
                """
            ),
            {"limit": limit},
        ).all()
        loads.extend(
            LoadStatus(
                schema,
                str(r.load_id),
                r.started_at,
                r.finished_at,
                int(r.files),
                int(r.loaded or 0),
                int(r.failed or 0),
                int(r.interrupted or 0),
                int(r.rows_inserted or 0),
                int(r.rows_rejected or 0),
            )
            for r in rows
        )
    loads.sort(key=lambda load: _sort_key(load.started_at), reverse=True)
    return loads[:limit]


def _recent_runs(conn: sa.Connection, limit: int) -> list[RunStatus]:
    if STATE_SCHEMA not in _tables(conn, "sync_runs"):
        return []
    present = {
        str(name)
        for (name,) in conn.execute(
            sa.text(
                "select column_name from information_schema.columns "
                "where table_schema = :schema and table_name = :table"
            ),
            {"schema": STATE_SCHEMA, "table": sync_runs.name},
        )
    }
    # ``status`` only reads: a warehouse synced by an older ctsync may lack newer columns.
    columns = [column for column in sync_runs.columns if column.name in present]
    rows = conn.execute(sa.select(*columns).order_by(sync_runs.c.started_at.desc()).limit(limit)).all()
    return [RunStatus(**row._asdict()) for row in rows]


def _newest_run_computations(conn: sa.Connection, runs: list[RunStatus]) -> dict[str, list[ComputationCounts]]:
    if STATE_SCHEMA not in _tables(conn, "sync_run_computations"):
        return {}
    newest = {run.destination: run.run_id for run in reversed(runs)}  # runs are newest first
    return {run_id: read_run_computations(conn, run_id) for run_id in newest.values()}


def _outbox_status(conn: sa.Connection) -> list[OutboxStatus]:
    if STATE_SCHEMA not in _tables(conn, "sync_outbox"):
        return []
    rows = conn.execute(
        sa.text(
            f"""
            select o.destination,
                   sum(case when o.status = 'pending' then 1 else 0 end) as pending,
                   sum(case when o.status = 'rejected' then 1 else 0 end) as rejected,
                   max(l.run_id) as locked_by
            from {OUTBOX} as o
            left join {LOCKS} as l on l.destination = o.destination
            where o.status in ('pending', 'rejected')
            group by o.destination
            order by o.destination
            """
        )
    ).all()
    return [OutboxStatus(str(r.destination), int(r.pending), int(r.rejected), r.locked_by) for r in rows]


def _sort_key(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else float("-inf")
