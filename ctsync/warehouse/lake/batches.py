"""``<schema>._lake_batches``: each batch's files, staged, recorded, then published.

A batch writes its files under ``_staging/`` in the lake, then records them (staged path -> table
path) in ``_lake_batches`` as ``committed`` in the same state-database transaction as its ``_loads``
rows, then moves them into the tables' folders and marks the batch ``published``:

* killed before the commit: nothing was recorded, the files stay ``loading`` (the next load marks
  them ``interrupted`` and loads them again) and the staged files are orphans, removed by the next load;
* killed after the commit: the batch is ``committed``, its files ``loaded``; the next load (or
  ``ctsync lake publish``) moves the rest of its files before doing anything else. Moving is idempotent,
  so a batch cut short halfway through publishing is finished, never written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from ctsync.errors import CtsyncError
from ctsync.naming import qualified, quote_identifier
from ctsync.warehouse.lake.storage import Lake
from ctsync.warehouse.targets import Target

BATCHES_TABLE = "_lake_batches"

BATCHES_COLUMNS = """
    batch_id varchar not null,
    lake varchar not null,
    status varchar not null,
    rows_by_table varchar,
    moves varchar not null,
    committed_at timestamp with time zone,
    published_at timestamp with time zone
"""


@dataclass(frozen=True)
class Move:
    """A staged file and the table file it becomes (both relative to the lake root)."""

    staged: str
    final: str


@dataclass(frozen=True)
class PendingBatch:
    batch_id: str
    moves: list[Move]


def ensure_batches_table(state: Target, schema: str) -> None:
    state.execute(f"create schema if not exists {quote_identifier(schema)}")
    state.execute(f"create table if not exists {qualified(schema, BATCHES_TABLE)} ({BATCHES_COLUMNS})")


def recorded_lakes(state: Target, schema: str) -> list[str]:
    return [str(row[0]) for row in state.execute(f"select distinct lake from {qualified(schema, BATCHES_TABLE)}")]


def record_batch(
    state: Target, schema: str, lake: Lake, batch_id: str, moves: list[Move], rows_by_table: dict[str, int]
) -> None:
    """Record a staged batch as ``committed`` (inside the batch's transaction)."""
    state.execute(
        f"insert into {qualified(schema, BATCHES_TABLE)} "
        "(batch_id, lake, status, rows_by_table, moves, committed_at) values (?, ?, 'committed', ?, ?, ?)",
        [
            batch_id,
            lake.describe(),
            json.dumps(rows_by_table, sort_keys=True),
            json.dumps([[move.staged, move.final] for move in moves]),
            datetime.now(UTC),
        ],
    )


def pending_batches(state: Target, schema: str) -> list[PendingBatch]:
    """Batches committed but not (fully) published, oldest first."""
    rows = state.execute(
        f"select batch_id, moves from {qualified(schema, BATCHES_TABLE)} "
        "where status = 'committed' order by committed_at, batch_id"
    )
    return [PendingBatch(str(batch_id), [Move(*pair) for pair in json.loads(str(moves))]) for batch_id, moves in rows]


def publish(state: Target, schema: str, lake: Lake, batch: PendingBatch) -> None:
    """Move a committed batch's files into their tables, then mark it ``published`` (its own statement)."""
    for move in batch.moves:
        lake.move(move.staged, move.final)
    lake.remove(lake.staging(schema, batch.batch_id))
    state.execute(
        f"update {qualified(schema, BATCHES_TABLE)} set status = 'published', published_at = ? "
        "where batch_id = ? and status = 'committed'",
        [datetime.now(UTC), batch.batch_id],
    )


def publish_pending(state: Target, schema: str, lake: Lake) -> list[PendingBatch]:
    """Finish every committed batch, then remove staged files no committed batch owns (a batch that
    failed or was killed before its commit). Returns the batches it published."""
    batches = pending_batches(state, schema)
    for batch in batches:
        try:
            publish(state, schema, lake, batch)
        except OSError as exc:
            raise CtsyncError(
                f"batch {batch.batch_id} is committed but its files could not be moved into {lake.describe()} "
                f"({str(exc).strip() or type(exc).__name__}); nothing else was done. Fix the cause and run "
                "`ctsync lake publish` or `ctsync load` again: publishing resumes where it stopped"
            ) from exc
    for orphan in lake.entries(lake.staging(schema)):
        lake.remove(lake.staging(schema, orphan))
    return batches
