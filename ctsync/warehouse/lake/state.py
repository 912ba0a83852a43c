"""Opening a lake with its state database, and the guards that keep the two together: a state database
belongs to one lake, is never loaded without it, and is never a warehouse that already holds rows."""

from __future__ import annotations

import duckdb

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.naming import qualified
from ctsync.warehouse.bookkeeping import DONE_STATUSES
from ctsync.warehouse.lake.batches import BATCHES_TABLE, ensure_batches_table, publish_pending, recorded_lakes
from ctsync.warehouse.lake.storage import Lake
from ctsync.warehouse.lake.target import LakeTarget
from ctsync.warehouse.targets import Target


def open_lake_target(
    duck: duckdb.DuckDBPyConnection, state: Target, root: str, schema: str, *, stage_only: bool = False
) -> LakeTarget:
    """The lake at ``root`` for ``schema``, with ``state`` (the loader's target on the state database)
    keeping its bookkeeping. Finishes publishing any batch an earlier run committed first; not with
    ``stage_only`` (a parallel load's worker, on a copy of the state: the flow publishes, and the staging
    area holds the other workers' files)."""
    lake = Lake.open(root)
    lake.attach(duck)
    if state.kind == "postgres":
        _lock(state, schema)
    catalog = state.columns(schema)
    if BATCHES_TABLE not in catalog and "_loads" in catalog:
        done = state.execute(
            f"select count(*) from {qualified(schema, '_loads')} where status in (select unnest(?::varchar[]))",
            [list(DONE_STATUSES)],
        )
        if int(done[0][0]):
            raise CtsyncError(
                f"the schema {schema} of this warehouse was loaded without a lake: its tables hold the rows. "
                "Give a lake load a state database of its own (a new DuckDB file or PostgreSQL database)"
            )
    ensure_batches_table(state, schema)
    others = [recorded for recorded in recorded_lakes(state, schema) if recorded != lake.describe()]
    if others:
        raise CtsyncError(
            f"this state database records loads of {schema} into the lake {others[0]}, not {lake.describe()}: "
            "point --lake (CTSYNC_LAKE) at that lake, or use a new state database for a new lake"
        )
    published = [] if stage_only else publish_pending(state, schema, lake)
    target = LakeTarget(duck, state, lake, schema, stage_only=stage_only)
    target.published_before = published
    return target


def refuse_lake_state(warehouse: Target, schema: str) -> None:
    """Refuse to load rows into a lake's state database: its tables are the lake's empty catalog, and the
    files would count as loaded without ever reaching the lake."""
    if BATCHES_TABLE in warehouse.columns(schema):
        lakes = recorded_lakes(warehouse, schema)
        raise CtsyncError(
            f"this warehouse is the state database of a lake ({schema} is loaded into "
            f"{lakes[0] if lakes else 'a lake'}): load with --lake (CTSYNC_LAKE) naming that lake"
        )


def _lock(state: Target, schema: str) -> None:
    """One lake load per schema at a time on a PostgreSQL state database (a DuckDB file has one writer)."""
    locked = state.execute("select pg_try_advisory_lock(hashtext(?))", [f"ctsync lake {schema}"])
    if not locked[0][0]:
        raise WarehouseBusy(
            f"another ctsync load is writing {schema} to the lake (its state database holds the lock); "
            "wait for it to finish and load again"
        )
