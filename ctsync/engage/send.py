"""Sending a destination's pending messages, chunk by chunk, committing each request's results.

for each chunk of pending messages (seq order):
    mark handed over (commit) -> destination.deliver -> per request: results + confirmed state (commit)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from ctsync.destinations.base import DeliveryStatus, Destination
from ctsync.engage.crash import CrashHook
from ctsync.engage.outbox import (
    PendingChunk,
    count_pending,
    mark_handed,
    outbound_messages,
    read_pending,
    record_results,
)
from ctsync.engage.pump import ResultPump
from ctsync.engage.state import Dialect, heartbeat, now, sync_runs
from ctsync.engage.summary import SyncSummary, counter_values

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 25_000
DEFAULT_COMMIT_LIMIT = 10_000
"""At most this many results share one transaction."""
HEARTBEAT_SECONDS = 5.0

Report = Callable[[str, int, int], None]


@dataclass
class Sender:
    """Sends one run's pending messages to ``dest``, adding its counts to ``summary``."""

    destination_name: str
    run_id: str
    chunk_size: int
    crash: CrashHook
    report: Report
    commit_limit: int = DEFAULT_COMMIT_LIMIT
    first_seq: int | None = None
    """The first message this run handed over (its results are counted per computation from there)."""
    problems: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)
    """Reasons values were left out of messages handed over (``<field>: <reason>``)."""
    _last_heartbeat: float = 0.0

    def send(self, conn: sa.Connection, dialect: Dialect, dest: Destination, summary: SyncSummary) -> None:
        clock = time.perf_counter()
        with conn.begin():
            total = count_pending(conn, self.destination_name)
        done = 0
        after = 0
        self.report("send", 0, total)
        while True:
            with conn.begin():
                chunk = read_pending(conn, self.destination_name, after_seq=after, limit=self.chunk_size)
            if not chunk:
                break
            if self.first_seq is None:
                self.first_seq = chunk.seqs[0]
            after = chunk.seqs[-1]
            with conn.begin():
                mark_handed(conn, self.destination_name, self.run_id, chunk.seqs[0], chunk.seqs[-1], now())
            self.crash.reached("chunk_handed")
            sent_before, failed_before = summary.sent, summary.failed
            done = self._deliver_chunk(conn, dialect, dest, summary, chunk, done, total)
            if summary.sent == sent_before and summary.failed > failed_before:
                summary.stopped_early = (
                    f"nothing in the last {len(chunk)} messages was acknowledged; the rest stay pending "
                    "for the next run"
                )
                logger.warning("%s: %s", self.destination_name, summary.stopped_early)
                break
        summary.send_seconds = time.perf_counter() - clock

    def _deliver_chunk(
        self,
        conn: sa.Connection,
        dialect: Dialect,
        dest: Destination,
        summary: SyncSummary,
        chunk: PendingChunk,
        done: int,
        total: int,
    ) -> int:
        seq_of = dict(zip(chunk.message_ids, chunk.seqs, strict=True))
        handed_before = {mid for mid, handoffs in zip(chunk.message_ids, chunk.handoffs, strict=True) if handoffs}
        messages, refused = outbound_messages(chunk)
        pump = ResultPump(dest.deliver(messages), first=[refused] if refused else [])
        try:
            for arrived in pump.batches(max_results=self.commit_limit):
                for _ in arrived:
                    self.crash.reached("response_received")
                results = [result for batch in arrived for result in batch]
                with conn.begin():
                    counts = record_results(
                        conn, dialect, destination=self.destination_name, results=results, seq_of=seq_of, at=now()
                    )
                    summary.sent += counts.sent
                    summary.rejected += counts.rejected
                    summary.failed += counts.failed
                    summary.retried += sum(1 for r in results if r.message_id in handed_before or r.attempts > 1)
                    for r in results:
                        if r.status is not DeliveryStatus.SENT:
                            self.problems[(r.code, r.reason)] += 1
                        if r.left_out:
                            summary.values_left_out += len(r.left_out)
                            self.left_out.update(r.left_out)
                    if time.monotonic() - self._last_heartbeat > HEARTBEAT_SECONDS:
                        heartbeat(conn, self.destination_name, self.run_id)
                        save_counts(conn, self.run_id, summary)
                        self._last_heartbeat = time.monotonic()
                self.crash.reached("results_committed")
                done += len(results)
                self.report("send", done, total)
        finally:
            pump.stop()
        return done

    def top_problems(self, limit: int = 5) -> list[tuple[str | None, str | None, int]]:
        return [(code, reason, count) for (code, reason), count in self.problems.most_common(limit)]

    def top_left_out(self, limit: int = 5) -> list[tuple[str, int]]:
        return self.left_out.most_common(limit)


def save_counts(conn: sa.Connection, run_id: str, summary: SyncSummary) -> None:
    """Refresh the run's totals in ``sync_runs`` (inside the caller's transaction)."""
    conn.execute(sa.update(sync_runs).where(sync_runs.c.run_id == run_id).values(**counter_values(summary)))
