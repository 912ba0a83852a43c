"""One event sync run: queue the warehouse events not queued yet, send them to CleverTap, record answers.

    lock -> queue new rows of each source (mapped to records, one transaction per chunk)
         -> for each chunk of pending events: hand over (commit) -> upload -> answers (commit)

Exactly once per event id: an event is queued once (the outbox key is the destination and the
event id), handed over only while ``pending``, and, since CleverTap appends what it is given,
never handed over again once a request carrying it may have arrived (:mod:`ctsync.events.outbox`).
The crash-safety tests stop the process at the checkpoints of :mod:`ctsync.engage.crash`.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

from ctsync.destinations.base import OutboundMessage
from ctsync.destinations.clevertap import CleverTapUploadClient
from ctsync.destinations.clevertap_events import CleverTapEventClient
from ctsync.destinations.config import SecretResolver, open_destination
from ctsync.engage.crash import CrashHook
from ctsync.engage.state import acquire_lock, connect, create_state_tables, now, release_lock
from ctsync.errors import CtsyncError
from ctsync.events.mapping import EventRejected, event_records
from ctsync.events.outbox import (
    OUTBOX,
    count_status,
    event_outbox,
    event_runs,
    mark_in_doubt,
    metadata,
    next_seq,
    read_pending,
    record_results,
    resend_in_doubt,
)
from ctsync.events.sources import EventSource, find_sources, new_rows
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import state_engine

logger = logging.getLogger(__name__)

READ_CHUNK = 5_000
LOCK_PREFIX = "events:"
"""Event syncs take the lock ``events:<destination>``: they run beside the destination's Identify sync."""


@dataclass
class EventSyncSummary:
    run_id: str
    destination: str
    sources: list[str] = field(default_factory=list)
    status: str = "running"
    """``succeeded``; ``incomplete`` when an event was rejected, is in doubt or still pending; ``failed``."""
    queued: int = 0
    """Events queued by this run (new rows of the sources)."""
    sent: int = 0
    rejected: int = 0
    """Refused by CleverTap, or by a mapping rule without being sent (a system event, no person)."""
    failed: int = 0
    """Answered with an error that says nothing arrived (429, 5xx after retries): pending again."""
    in_doubt: int = 0
    """Handed over without an answer, now or by an earlier run: held until resent on purpose."""
    resent_in_doubt: int = 0
    pending: int = 0
    values_left_out: int = 0
    problems: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    left_out_reasons: list[tuple[str, int]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "sent": self.sent,
            "rejected": self.rejected,
            "failed": self.failed,
            "in doubt": self.in_doubt,
            "pending": self.pending,
            "values left out": self.values_left_out,
        }


def sync_events(
    destination_name: str,
    *,
    warehouse: str,
    schemas: Sequence[str] = (),
    tables: Sequence[str] = (),
    since: datetime | None = None,
    resend_in_doubt_events: bool = False,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    secret_resolver: SecretResolver | None = None,
    client: CleverTapEventClient | None = None,
    wait_seconds: float = 10.0,
) -> EventSyncSummary:
    """Send the events of ``schemas`` (every event table) and ``tables`` not sent yet to a CleverTap destination."""
    env = os.environ if environ is None else environ
    target = parse_warehouse(warehouse)
    if target.kind == "duckdb" and not Path(target.location).is_file():
        raise CtsyncError(f"no warehouse at {target.location}: load events first")
    owned = client is None
    if client is None:
        upload = open_destination(
            destination_name, config_path=config_path, environ=env, secret_resolver=secret_resolver
        )
        if not isinstance(upload, CleverTapUploadClient):
            upload.close()
            raise CtsyncError(
                f"destination {destination_name!r} is a {upload.kind} destination: events go to CleverTap "
                "destinations only (type: clevertap)"
            )
        try:
            client = CleverTapEventClient(upload)
        finally:
            upload.close()
    run = _EventRun(destination_name, CrashHook.from_environ(env))
    try:
        engine = state_engine(target)
        try:
            conn = connect(engine, wait_seconds=wait_seconds)
            try:
                return run.execute(conn, client, schemas, tables, since, resend_in_doubt_events, wait_seconds)
            finally:
                conn.close()
        finally:
            engine.dispose()
    finally:
        if owned:
            client.close()


@dataclass
class _EventRun:
    destination: str
    crash: CrashHook
    problems: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)
    _in_doubt_now: int = 0

    def execute(
        self,
        conn: sa.Connection,
        client: CleverTapEventClient,
        schemas: Sequence[str],
        tables: Sequence[str],
        since: datetime | None,
        resend: bool,
        wait_seconds: float,
    ) -> EventSyncSummary:
        started = now()
        summary = EventSyncSummary(f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", self.destination)
        with conn.begin():
            create_state_tables(conn)
            metadata.create_all(conn, checkfirst=True)
            sources = find_sources(conn, schemas, tables)
        summary.sources = [source.name for source in sources]
        lock = LOCK_PREFIX + self.destination
        acquire_lock(conn, lock, summary.run_id, wait_seconds=wait_seconds)
        try:
            with conn.begin():
                conn.execute(
                    sa.insert(event_runs).values(
                        run_id=summary.run_id, destination=self.destination, started_at=started, status="running"
                    )
                )
            try:
                if resend:
                    with conn.begin():
                        summary.resent_in_doubt = resend_in_doubt(conn, self.destination, now())
                for source in sources:
                    self._queue(conn, source, since, summary)
                self.crash.reached("outbox_committed")
                self._send(conn, client, summary)
                with conn.begin():
                    summary.in_doubt = count_status(conn, self.destination, "in_doubt")
                    summary.pending = count_status(conn, self.destination, "pending")
                done = summary.rejected == 0 and summary.in_doubt == 0 and summary.pending == 0
                summary.status = "succeeded" if done else "incomplete"
            except BaseException as exc:
                summary.status = "failed"
                self._finish(conn, summary, f"{type(exc).__name__}: {exc}"[:2000])
                raise
            self._finish(conn, summary, None)
        finally:
            try:
                release_lock(conn, lock, summary.run_id)
            except sa.exc.SQLAlchemyError:
                logger.warning("could not release the event sync lock of %s", summary.run_id)
        return summary

    def _queue(
        self, conn: sa.Connection, source: EventSource, since: datetime | None, summary: EventSyncSummary
    ) -> None:
        """Map and store the rows of ``source`` not queued yet, one transaction per chunk."""
        conn.begin()
        try:
            seq = next_seq(conn, self.destination)
            for rows in new_rows(
                conn, source, destination=self.destination, outbox=OUTBOX, since=since, limit=READ_CHUNK
            ):
                at = now()
                values = []
                for row in rows:
                    values.append(self._outbox_row(row, source, seq, at, summary))
                    seq += 1
                conn.execute(sa.insert(event_outbox), values)
                conn.commit()
                conn.begin()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _outbox_row(
        self, row: dict[str, object], source: EventSource, seq: int, at: datetime, summary: EventSyncSummary
    ) -> dict[str, object]:
        base: dict[str, object] = {
            "destination": self.destination,
            "event_id": str(row["id"]),
            "source": source.name,
            "seq": seq,
            "handoffs": 0,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
            "run_id": summary.run_id,
        }
        summary.queued += 1
        try:
            mapped = event_records(row, source.kind)
        except EventRejected as exc:
            summary.rejected += 1
            self.problems[(exc.code, exc.reason)] += 1
            return {**base, "payload": "{}", "status": "rejected", "last_code": exc.code, "last_reason": exc.reason}
        if mapped.left_out:
            summary.values_left_out += len(mapped.left_out)
            self.left_out.update(mapped.left_out)
        return {
            **base,
            "payload": orjson.dumps({"records": mapped.records}, default=str).decode(),
            "status": "pending",
            "left_out": "\n".join(mapped.left_out) or None,
        }

    def _send(self, conn: sa.Connection, client: CleverTapEventClient, summary: EventSyncSummary) -> None:
        after = 0
        chunk_size = client.batch_size * client.concurrency
        while True:
            with conn.begin():
                chunk = read_pending(conn, self.destination, after_seq=after, limit=chunk_size)
            if not chunk:
                return
            after = chunk.seqs[-1]
            with conn.begin():
                mark_in_doubt(conn, self.destination, summary.run_id, chunk.seqs, now())
            self.crash.reached("chunk_handed")
            messages = [
                OutboundMessage(event_id, orjson.loads(payload))
                for event_id, payload in zip(chunk.event_ids, chunk.payloads, strict=True)
            ]
            answered_before = summary.sent + summary.rejected
            unanswered_before = summary.failed + self._in_doubt_now
            for results in client.deliver(messages):
                self.crash.reached("response_received")
                with conn.begin():
                    counts = record_results(conn, self.destination, results, now())
                self.crash.reached("results_committed")
                summary.sent += counts.sent
                summary.rejected += counts.rejected
                summary.failed += counts.failed
                self._in_doubt_now += counts.in_doubt
                for result in results:
                    if result.status.value != "sent":
                        self.problems[(result.code, result.reason)] += 1
                    if result.left_out:
                        summary.values_left_out += len(result.left_out)
                        self.left_out.update(result.left_out)
            unanswered = summary.failed + self._in_doubt_now > unanswered_before
            if unanswered and summary.sent + summary.rejected == answered_before:
                logger.warning(
                    "%s: nothing in the last %d events was answered; the rest wait for the next run",
                    self.destination,
                    len(chunk),
                )
                return

    def _finish(self, conn: sa.Connection, summary: EventSyncSummary, error: str | None) -> None:
        summary.problems = [(code, reason, n) for (code, reason), n in self.problems.most_common(5)]
        summary.left_out_reasons = self.left_out.most_common(5)
        try:
            if conn.in_transaction():
                conn.rollback()
            with conn.begin():
                conn.execute(
                    sa.update(event_runs)
                    .where(event_runs.c.run_id == summary.run_id)
                    .values(
                        status=summary.status,
                        finished_at=now(),
                        queued=summary.queued,
                        sent=summary.sent,
                        rejected=summary.rejected,
                        failed=summary.failed,
                        in_doubt=summary.in_doubt,
                        pending=summary.pending,
                        values_left_out=summary.values_left_out,
                        error=error,
                    )
                )
        except sa.exc.SQLAlchemyError:
            logger.warning("could not record the end of event run %s", summary.run_id, exc_info=True)
