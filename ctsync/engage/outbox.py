"""The outbox: every Identify call is stored, with its final messageId, before it is sent.

Per run, :func:`reconcile_outbox` turns the diff (``ctsync_changes``) into pending messages:

* a pending or rejected message that is no longer wanted becomes ``superseded``;
* a change that names a reusable message sets it back to ``pending`` with a fresh ``seq``
  (the same messageId: a destination that saw it already can deduplicate it);
* every other change becomes a new ``pending`` message, its payload built in SQL.

Sending then reads pending messages in ``seq`` order (:func:`read_pending`), records that they
were handed over before the destination sees them (:func:`mark_handed`), and commits each
request's results in one transaction (:func:`record_results`): the outbox status of every
message and, for acknowledged ones only, the confirmed state. Nothing else confirms anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from ctsync.destinations.base import DeliveryResult, DeliveryStatus, OutboundMessage
from ctsync.destinations.http import NOT_SENT
from ctsync.engage.diff import CHANGES
from ctsync.engage.payloads import message_id_prefix, payload_constants, payload_context_sql, payload_sql
from ctsync.engage.state import OUTBOX, STATE, Dialect

_REASON_LIMIT = 1000


@dataclass(frozen=True)
class Reconciled:
    superseded: int
    reused: int
    inserted: int


def reconcile_outbox(
    conn: sa.Connection,
    dialect: Dialect,
    *,
    destination: str,
    run_id: str,
    space_id: str,
    timestamp: str,
    at: datetime,
    original_timestamp: str | None = None,
    integrations: dict[str, Any] | None = None,
    emails: str | None = None,
) -> Reconciled:
    """Bring the outbox in line with ``ctsync_changes`` (inside the caller's transaction).

    ``emails`` names a relation of (user_id, email) whose email new payloads carry in
    ``traits.email`` (:func:`ctsync.engage.payloads.payload_sql`); None: no emails known.
    """
    superseded = conn.execute(
        sa.text(
            f"""
            update {OUTBOX} as o set status = 'superseded', updated_at = :at
            where o.destination = :destination and o.status in ('pending', 'rejected')
              and not exists (select 1 from {CHANGES} as c where c.reuse_seq = o.seq)
            """
        ),
        {"destination": destination, "at": at},
    ).rowcount
    reused = conn.execute(
        sa.text(
            f"""
            update {OUTBOX} as o
            set status = 'pending', seq = c.new_seq, updated_at = :at
            from {CHANGES} as c
            where c.reuse_seq is not null
              and o.destination = :destination and o.seq = c.reuse_seq
            """
        ),
        {"destination": destination, "at": at},
    ).rowcount
    computations = f"(select distinct computation_class, computation_key from {CHANGES})"
    inserted = conn.execute(
        sa.text(
            f"""
            insert into {OUTBOX} (
                seq, message_id, destination, computation_class, computation_key, id_type, person_id,
                user_id, anonymous_id, value, payload, status, handoffs, unanswered, attempts,
                created_at, updated_at, run_id
            )
            select
                c.new_seq, c.message_id, :destination, c.computation_class, c.computation_key, c.id_type,
                c.person_id, c.user_id, c.anonymous_id, c.value,
                {payload_sql(dialect, "c", "k", "e.email" if emails else None)}, 'pending', 0, 0, 0,
                :at, :at, :run_id
            from (
                select new_seq, {dialect.new_message_id("new_seq")} as message_id, computation_class,
                       computation_key, id_type, person_id, user_id, anonymous_id, value
                from {CHANGES}
                where reuse_message_id is null
            ) as c
            inner join ({payload_context_sql(dialect, computations)}) as k
                on k.computation_class = c.computation_class and k.computation_key = c.computation_key
            {_email_join(emails)}
            """
        ),
        {
            "destination": destination,
            "at": at,
            "run_id": run_id,
            "message_id_prefix": message_id_prefix(at),
            **payload_constants(space_id, timestamp, original_timestamp=original_timestamp, integrations=integrations),
        },
    ).rowcount
    return Reconciled(superseded=max(superseded, 0), reused=max(reused, 0), inserted=max(inserted, 0))


def _email_join(emails: str | None) -> str:
    """LEFT JOIN of each change's email (one per user_id: the greatest if a relation has more)."""
    if emails is None:
        return ""
    return f"""
            left join (
                select user_id, max(email) as email
                from {emails}
                where user_id is not null and email is not null and email <> ''
                group by user_id
            ) as e on e.user_id = c.user_id"""


@dataclass(frozen=True)
class PendingChunk:
    """Pending messages in send order, column by column."""

    seqs: list[int]
    message_ids: list[str]
    payloads: list[str]
    """Stored payload JSON text."""
    handoffs: list[int]

    def __len__(self) -> int:
        return len(self.seqs)


def count_pending(conn: sa.Connection, destination: str) -> int:
    return int(
        conn.execute(
            sa.text(f"select count(*) from {OUTBOX} where destination = :destination and status = 'pending'"),
            {"destination": destination},
        ).scalar_one()
    )


def prune_outbox(conn: sa.Connection, destination: str, *, before: datetime) -> int:
    """Delete the messages no run needs again, last touched before ``before``; how many went.

    Those are ``sent`` messages, and ``superseded`` ones that cannot have reached the destination
    (never left unanswered) or that a later confirmed message outdates. Pending and rejected
    messages, messages still in doubt, and the destination's latest ``seq`` (new messages number
    on from it) always stay.
    """
    result = conn.execute(
        sa.text(
            f"""
            delete from {OUTBOX} as o
            where o.destination = :destination
              and o.updated_at < :before
              and o.seq < (select max(seq) from {OUTBOX} where destination = :destination)
              and (
                o.status = 'sent'
                or (o.status = 'superseded' and (
                    o.unanswered = 0
                    or exists (
                        select 1 from {STATE} as s
                        where s.destination = o.destination and s.computation_class = o.computation_class
                          and s.computation_key = o.computation_key and s.id_type = o.id_type
                          and s.person_id = o.person_id and s.confirmed_seq > o.seq
                    )
                ))
              )
            """
        ),
        {"destination": destination, "before": before},
    )
    return int(result.rowcount)


def read_pending(conn: sa.Connection, destination: str, *, after_seq: int, limit: int) -> PendingChunk:
    """The next ``limit`` pending messages after ``after_seq``, in send order."""
    # Find the seq range on the narrow columns first, then read the payloads of that range only.
    last: int | None = conn.execute(
        sa.text(
            f"""
            select max(seq) from (
                select seq from {OUTBOX}
                where destination = :destination and status = 'pending' and seq > :after_seq
                order by seq
                limit :limit
            ) as next_seqs
            """
        ),
        {"destination": destination, "after_seq": after_seq, "limit": limit},
    ).scalar_one()
    if last is None:
        return PendingChunk([], [], [], [])
    rows = conn.execute(
        sa.text(
            f"""
            select seq, message_id, payload, handoffs
            from {OUTBOX}
            where destination = :destination and status = 'pending' and seq > :after_seq and seq <= :last_seq
            order by seq
            """
        ),
        {"destination": destination, "after_seq": after_seq, "last_seq": int(last)},
    ).all()
    seqs, message_ids, payloads, handoffs = (list(column) for column in zip(*rows, strict=True))
    return PendingChunk(seqs, message_ids, payloads, handoffs)


def mark_handed(
    conn: sa.Connection, destination: str, run_id: str, first_seq: int, last_seq: int, at: datetime
) -> None:
    """Record that the pending messages in ``[first_seq, last_seq]`` are being handed over.

    Committed before the destination sees them: until a definitive answer (acknowledged or
    refused) comes back, the hand-off counts as ``unanswered`` and the diff treats the value
    as possibly arrived ("in doubt"). A crash leaves it that way.
    """
    conn.execute(
        sa.text(
            f"""
            update {OUTBOX}
            set handoffs = handoffs + 1, unanswered = unanswered + 1, last_run_id = :run_id, updated_at = :at
            where destination = :destination and status = 'pending' and seq between :first_seq and :last_seq
            """
        ),
        {"destination": destination, "run_id": run_id, "at": at, "first_seq": first_seq, "last_seq": last_seq},
    )


def outbound_messages(chunk: PendingChunk) -> tuple[list[OutboundMessage], list[DeliveryResult]]:
    """Messages to hand over, and rejections for stored payloads that are not JSON objects."""
    messages: list[OutboundMessage] = []
    refused: list[DeliveryResult] = []
    for message_id, text in zip(chunk.message_ids, chunk.payloads, strict=True):
        try:
            payload = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            refused.append(_invalid(message_id, f"the stored payload is not valid JSON ({exc})"))
            continue
        if not isinstance(payload, dict):
            refused.append(_invalid(message_id, "the stored payload is not a JSON object"))
            continue
        messages.append(OutboundMessage(message_id, payload))
    return messages, refused


def _invalid(message_id: str, reason: str) -> DeliveryResult:
    reason += "; check the value JSON in engage_computed_traits"
    return DeliveryResult(message_id, DeliveryStatus.REJECTED, "invalid_payload", reason, attempts=0)


@dataclass
class RecordedCounts:
    sent: int = 0
    rejected: int = 0
    failed: int = 0


def record_results(
    conn: sa.Connection,
    dialect: Dialect,
    *,
    destination: str,
    results: Sequence[DeliveryResult],
    seq_of: dict[str, int],
    at: datetime,
) -> RecordedCounts:
    """Write one request's results (inside the caller's transaction).

    SENT: the message is ``sent`` and its value becomes the confirmed state. REJECTED:
    ``rejected`` with the code and reason (retried next run if still wanted; this hand-off is
    answered). FAILED: stays ``pending`` with the code and reason, the hand-off unanswered
    (retried next run). Set-based: one statement per distinct (status, code, reason, attempts).
    """
    groups: dict[tuple[DeliveryStatus, str | None, str | None, int], list[int]] = defaultdict(list)
    for result in results:
        seq = seq_of.get(result.message_id)
        if seq is None:
            continue  # not a message of this chunk: nothing to record
        reason = result.reason[:_REASON_LIMIT] if result.reason else None
        groups[(result.status, result.code, reason, result.attempts)].append(seq)
    counts = RecordedCounts()
    for (status, code, reason, attempts), seqs in groups.items():
        where = (
            f"destination = :destination and seq between :low and :high and {dialect.in_list('seq', 'seqs')}"
            " and status = 'pending'"
        )
        params = {
            "destination": destination,
            "low": min(seqs),
            "high": max(seqs),
            "seqs": seqs,
            "at": at,
            "attempts": attempts,
            "code": code,
            "reason": reason,
        }
        if status is DeliveryStatus.SENT:
            _confirm(conn, dialect, params)
            conn.execute(
                sa.text(
                    f"""
                    update {OUTBOX}
                    set status = 'sent', sent_at = :at, updated_at = :at, attempts = attempts + :attempts,
                        unanswered = 0, last_code = null, last_reason = null
                    where {where}
                    """
                ),
                params,
            )
            counts.sent += len(seqs)
            continue
        # A refusal, or a request never made, answers this hand-off: the message did not arrive.
        # Any other failure (timeout, 5xx after retries, dropped connection) leaves it unanswered.
        answered = status is DeliveryStatus.REJECTED or code == NOT_SENT
        conn.execute(
            sa.text(
                f"""
                update {OUTBOX}
                set status = :new_status, updated_at = :at, attempts = attempts + :attempts,
                    last_code = :code, last_reason = :reason,
                    unanswered = case when unanswered > 0 then unanswered - :answered else 0 end
                where {where}
                """
            ),
            {
                **params,
                "new_status": "rejected" if status is DeliveryStatus.REJECTED else "pending",
                "answered": int(answered),
            },
        )
        if status is DeliveryStatus.REJECTED:
            counts.rejected += len(seqs)
        else:
            counts.failed += len(seqs)
    return counts


def _confirm(conn: sa.Connection, dialect: Dialect, params: dict[str, object]) -> None:
    """Upsert the confirmed state from the acknowledged (still pending) messages."""
    source = f"""
        select destination, computation_class, computation_key, id_type, person_id, anonymous_id,
               value, message_id, seq
        from {OUTBOX}
        where destination = :destination and seq between :low and :high and {dialect.in_list("seq", "seqs")}
          and status = 'pending'
    """
    conn.execute(sa.text(dialect.upsert_state(STATE, source)), params)
