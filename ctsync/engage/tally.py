"""Counts per audience and trait, computed in SQL, and where each run keeps them.

``ctsync.sync_run_computations`` holds one row per run and computation that changed or had
messages waiting: entered, exited, changed (set to null), the removals the mass-change guard
weighs against what the destination had confirmed, and what was sent, rejected, failed or left
pending. ``ctsync status`` shows the latest run's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa

from ctsync.engage.diff import CHANGES
from ctsync.engage.state import OUTBOX, STATE
from ctsync.engage.summary import ComputationCounts
from ctsync.warehouse.state import STATE_SCHEMA, ensure_state_schema

logger = logging.getLogger(__name__)

metadata = sa.MetaData(schema=STATE_SCHEMA)

sync_run_computations = sa.Table(
    "sync_run_computations",
    metadata,
    sa.Column("run_id", sa.String, nullable=False, comment="sync_runs.run_id"),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("computation_class", sa.String, nullable=False, comment="audience or trait"),
    sa.Column("computation_key", sa.String, nullable=False),
    sa.Column("entered", sa.BigInteger, nullable=False),
    sa.Column("exited", sa.BigInteger, nullable=False),
    sa.Column("changed", sa.BigInteger, nullable=False, comment="trait values changed, set to null included"),
    sa.Column("nulled", sa.BigInteger, nullable=False, comment="trait values set to null"),
    sa.Column("removed", sa.BigInteger, nullable=False, comment="exits (nulls) of confirmed members (values)"),
    sa.Column("confirmed", sa.BigInteger, comment="confirmed members (values) before the run, when any were removed"),
    sa.Column("sent", sa.BigInteger, nullable=False),
    sa.Column("rejected", sa.BigInteger, nullable=False),
    sa.Column("failed", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("mass_change", sa.Boolean, nullable=False, comment="past the mass-change limit"),
    sa.PrimaryKeyConstraint("run_id", "computation_class", "computation_key"),
)

RUN_COMPUTATIONS = f"{STATE_SCHEMA}.sync_run_computations"

_REMOVAL = (
    "((c.computation_class = 'audience' and c.value = 'false') or (c.computation_class = 'trait' and c.value = 'null'))"
)
"""A change that takes a membership (a value) away."""
_HELD = (
    "((s.computation_class = 'audience' and s.value = 'true') or (s.computation_class = 'trait' and s.value <> 'null'))"
)
"""A confirmed membership (value)."""


def create_run_computations_table(conn: sa.Connection) -> None:
    """Create ``ctsync.sync_run_computations`` if it is missing; add the columns a later version added."""
    ensure_state_schema(conn)
    metadata.create_all(conn, checkfirst=True)
    present = {
        str(name)
        for (name,) in conn.execute(
            sa.text(
                "select column_name from information_schema.columns "
                "where table_schema = :schema and table_name = :table"
            ),
            {"schema": STATE_SCHEMA, "table": sync_run_computations.name},
        )
    }
    for column in sync_run_computations.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"alter table {RUN_COMPUTATIONS} add column {column.name} {kind}"))
            logger.info("added column %s.%s to the sync state", sync_run_computations.name, column.name)


def count_changes(conn: sa.Connection, destination: str) -> list[ComputationCounts]:
    """Per computation: the changes in ``ctsync_changes`` and, where some remove a confirmed member
    (value), how many, out of how many the destination confirmed."""
    counts = {
        (str(row.computation_class), str(row.computation_key)): ComputationCounts(
            str(row.computation_class),
            str(row.computation_key),
            entered=int(row.entered),
            exited=int(row.exited),
            changed=int(row.changed),
            nulled=int(row.nulled),
        )
        for row in conn.execute(
            sa.text(
                f"""
                select computation_class, computation_key,
                       sum(case when change = 'entered' then 1 else 0 end) as entered,
                       sum(case when change = 'exited' then 1 else 0 end) as exited,
                       sum(case when change = 'changed' then 1 else 0 end) as changed,
                       sum(case when change = 'changed' and value = 'null' then 1 else 0 end) as nulled
                from {CHANGES}
                group by computation_class, computation_key
                """
            )
        )
    }
    for row in conn.execute(sa.text(_REMOVALS), {"destination": destination}):
        found = counts[(str(row.computation_class), str(row.computation_key))]
        found.removed = int(row.removed)
        found.confirmed = int(row.confirmed)
    return sorted(counts.values(), key=_order)


_REMOVALS = f"""
    with removals as (
        select c.computation_class, c.computation_key, count(*) as removed
        from {CHANGES} as c
        where {_REMOVAL}
          and ((c.computation_class = 'audience' and c.confirmed_value = 'true')
               or (c.computation_class = 'trait' and c.confirmed_value <> 'null'))
        group by c.computation_class, c.computation_key
    ),
    held as (
        select s.computation_class, s.computation_key, count(*) as confirmed
        from {STATE} as s
        where s.destination = :destination and {_HELD}
        group by s.computation_class, s.computation_key
    )
    select r.computation_class, r.computation_key, r.removed, coalesce(h.confirmed, 0) as confirmed
    from removals as r
    left join held as h
        on h.computation_class = r.computation_class and h.computation_key = r.computation_key
"""
"""Per computation with removals: how many confirmed members (values) the changes take away, out
of how many the destination confirmed (``confirmed_value`` of ``ctsync_changes``: no join)."""


def add_results(
    conn: sa.Connection,
    counts: list[ComputationCounts],
    *,
    destination: str,
    run_id: str,
    first_seq: int | None,
) -> list[ComputationCounts]:
    """``counts`` with what the run sent, got rejected and left failed (messages it handed over,
    from ``first_seq`` on) and what is pending now, per computation."""
    by_key = {(c.computation_class, c.computation_key): c for c in counts}

    def entry(computation_class: str, computation_key: str) -> ComputationCounts:
        key = (computation_class, computation_key)
        if key not in by_key:
            by_key[key] = ComputationCounts(computation_class, computation_key)
        return by_key[key]

    if first_seq is not None:
        for row in conn.execute(
            sa.text(
                f"""
                select computation_class, computation_key,
                       sum(case when status = 'sent' then 1 else 0 end) as sent,
                       sum(case when status = 'rejected' then 1 else 0 end) as rejected,
                       sum(case when status = 'pending' then 1 else 0 end) as failed
                from {OUTBOX}
                where destination = :destination and seq >= :first_seq and last_run_id = :run_id
                group by computation_class, computation_key
                """
            ),
            {"destination": destination, "first_seq": first_seq, "run_id": run_id},
        ):
            found = entry(str(row.computation_class), str(row.computation_key))
            found.sent, found.rejected, found.failed = int(row.sent), int(row.rejected), int(row.failed)
    for computation_class, computation_key, pending in count_pending_by_computation(conn, destination):
        entry(computation_class, computation_key).pending = pending
    return sorted(by_key.values(), key=_order)


def count_pending_by_computation(conn: sa.Connection, destination: str) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        sa.text(
            f"""
            select computation_class, computation_key, count(*) as pending
            from {OUTBOX}
            where destination = :destination and status = 'pending'
            group by computation_class, computation_key
            """
        ),
        {"destination": destination},
    )
    return [(str(r.computation_class), str(r.computation_key), int(r.pending)) for r in rows]


def save_run_computations(
    conn: sa.Connection, run_id: str, destination: str, counts: Iterable[ComputationCounts]
) -> None:
    """Store a run's counts per computation (inside the caller's transaction), replacing earlier ones."""
    conn.execute(sa.delete(sync_run_computations).where(sync_run_computations.c.run_id == run_id))
    rows = [
        {
            "run_id": run_id,
            "destination": destination,
            "computation_class": c.computation_class,
            "computation_key": c.computation_key,
            "entered": c.entered,
            "exited": c.exited,
            "changed": c.changed,
            "nulled": c.nulled,
            "removed": c.removed,
            "confirmed": c.confirmed,
            "sent": c.sent,
            "rejected": c.rejected,
            "failed": c.failed,
            "pending": c.pending,
            "mass_change": c.mass_change,
        }
        for c in counts
    ]
    if rows:
        conn.execute(sa.insert(sync_run_computations), rows)


def read_run_computations(conn: sa.Connection, run_id: str) -> list[ComputationCounts]:
    """A run's counts per computation; none for a run recorded before the table existed."""
    table = sync_run_computations
    rows = conn.execute(
        sa.select(*(column for column in table.columns if column.name not in ("run_id", "destination"))).where(
            table.c.run_id == run_id
        )
    ).all()
    return sorted((ComputationCounts(**row._asdict()) for row in rows), key=_order)


def _order(counts: ComputationCounts) -> tuple[str, str]:
    return counts.computation_class, counts.computation_key
