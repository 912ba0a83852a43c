"""The event outbox: every event chosen for a destination, stored once with its records before it is sent.

``ctsync.event_outbox`` has one row per (destination, event id): the records it becomes
(:mod:`ctsync.events.mapping`), its status and what the destination said.

    pending  -> in_doubt (handed over, committed before the request) -> sent | rejected | pending
    rejected (by a mapping rule, never sent)

CleverTap appends every event it is given, so an event is never handed over twice on its own:
one whose request got no answer (a timeout, a dropped connection, a process killed between the
request and the commit of its answer) stays ``in_doubt`` until an operator, having checked
CleverTap, resends it (``resend_in_doubt``). Answers that say nothing arrived (429, 5xx, a
connection refused) put it back to ``pending`` for the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ctsync.destinations.base import DeliveryResult, DeliveryStatus
from ctsync.destinations.clevertap_events import UNANSWERED_CODES
from ctsync.warehouse.state import STATE_SCHEMA

metadata = sa.MetaData(schema=STATE_SCHEMA)

event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("event_id", sa.String, nullable=False, comment="the row's id in its warehouse table"),
    sa.Column("source", sa.String, nullable=False, comment="schema.table the row came from"),
    sa.Column("seq", sa.BigInteger, nullable=False, comment="send order within the destination"),
    sa.Column("payload", sa.Text, nullable=False, comment='{"records": [...]} exactly as sent'),
    sa.Column("status", sa.String, nullable=False, comment="pending, in_doubt, sent or rejected"),
    sa.Column("handoffs", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_code", sa.String),
    sa.Column("last_reason", sa.String),
    sa.Column("left_out", sa.Text, comment="values left out of the records, one per line"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("last_run_id", sa.String),
    sa.PrimaryKeyConstraint("destination", "event_id"),
)

event_runs = sa.Table(
    "event_runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String, nullable=False, comment="running, succeeded, incomplete, failed"),
    sa.Column("queued", sa.BigInteger, nullable=False, default=0),
    sa.Column("sent", sa.BigInteger, nullable=False, default=0),
    sa.Column("rejected", sa.BigInteger, nullable=False, default=0),
    sa.Column("failed", sa.BigInteger, nullable=False, default=0),
    sa.Column("in_doubt", sa.BigInteger, nullable=False, default=0),
    sa.Column("pending", sa.BigInteger, nullable=False, default=0),
    sa.Column("values_left_out", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text),
)

OUTBOX = f"{STATE_SCHEMA}.event_outbox"
_REASON_LIMIT = 1000


@dataclass(frozen=True)
class PendingEvents:
    seqs: list[int]
    event_ids: list[str]
    payloads: list[str]

    def __len__(self) -> int:
        return len(self.seqs)


def next_seq(conn: sa.Connection, destination: str) -> int:
    last: int | None = conn.execute(
        sa.select(sa.func.max(event_outbox.c.seq)).where(event_outbox.c.destination == destination)
    ).scalar_one()
    return int(last or 0) + 1


def read_pending(conn: sa.Connection, destination: str, *, after_seq: int, limit: int) -> PendingEvents:
    rows = conn.execute(
        sa.select(event_outbox.c.seq, event_outbox.c.event_id, event_outbox.c.payload)
        .where(
            event_outbox.c.destination == destination,
            event_outbox.c.status == "pending",
            event_outbox.c.seq > after_seq,
        )
        .order_by(event_outbox.c.seq)
        .limit(limit)
    ).all()
    return PendingEvents([r.seq for r in rows], [r.event_id for r in rows], [r.payload for r in rows])


def mark_in_doubt(conn: sa.Connection, destination: str, run_id: str, seqs: Sequence[int], at: datetime) -> None:
    """Hand-off, committed before the request: from here until its answer is committed, in doubt."""
    conn.execute(
        sa.update(event_outbox)
        .where(
            event_outbox.c.destination == destination,
            event_outbox.c.status == "pending",
            event_outbox.c.seq.between(min(seqs), max(seqs)),
        )
        .values(status="in_doubt", handoffs=event_outbox.c.handoffs + 1, last_run_id=run_id, updated_at=at)
    )


@dataclass
class Recorded:
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    in_doubt: int = 0


def record_results(conn: sa.Connection, destination: str, results: Sequence[DeliveryResult], at: datetime) -> Recorded:
    """One request's answer: sent, rejected, back to pending (nothing arrived) or still in doubt."""
    counts = Recorded()
    for result in results:
        values: dict[str, object] = {
            "updated_at": at,
            "attempts": event_outbox.c.attempts + result.attempts,
            "last_code": result.code,
            "last_reason": result.reason[:_REASON_LIMIT] if result.reason else None,
        }
        if result.status is DeliveryStatus.SENT:
            values.update(status="sent", sent_at=at)
            counts.sent += 1
        elif result.status is DeliveryStatus.REJECTED:
            values["status"] = "rejected"
            counts.rejected += 1
        elif result.code in UNANSWERED_CODES:
            counts.in_doubt += 1  # may have arrived: stays in_doubt
        else:
            values["status"] = "pending"
            counts.failed += 1
        conn.execute(
            sa.update(event_outbox)
            .where(
                event_outbox.c.destination == destination,
                event_outbox.c.event_id == result.message_id,
                event_outbox.c.status == "in_doubt",
            )
            .values(**values)
        )
    return counts


def resend_in_doubt(conn: sa.Connection, destination: str, at: datetime) -> int:
    """Put every in-doubt event back to pending (the operator checked CleverTap does not have them)."""
    return int(
        conn.execute(
            sa.update(event_outbox)
            .where(event_outbox.c.destination == destination, event_outbox.c.status == "in_doubt")
            .values(status="pending", updated_at=at)
        ).rowcount
    )


def count_status(conn: sa.Connection, destination: str, status: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(event_outbox)
            .where(event_outbox.c.destination == destination, event_outbox.c.status == status)
        ).scalar_one()
    )
