"""One sync run: diff against confirmed state, fill the outbox, send, confirm what was acknowledged.

    lock -> diff + outbox (one transaction) -> for each chunk of pending messages:
        mark handed over (commit) -> destination.deliver -> per request: results + confirmed state (commit)

A crash anywhere leaves every unconfirmed message ``pending`` (or, if the data changed meanwhile,
``superseded`` but remembered as possibly delivered); the next run sends them again with the
same messageId. Confirmed state only ever moves on an acknowledgement.

Test hook: ``CTSYNC_TEST_CRASH_AT=<checkpoint>[:<n>]`` makes the process exit at once
(``os._exit(86)``, no cleanup, like a kill) the n-th time (default 1st) it reaches the
checkpoint: ``outbox_committed``, ``chunk_handed``, ``response_received`` (a request's results
are in memory, not yet committed) or ``results_committed``. Only the crash-safety tests set it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ctsync.destinations.base import DeliveryStatus, Destination
from ctsync.destinations.config import SecretResolver, open_destination
from ctsync.engage.diff import CHANGES, ENGAGE_SCHEMA, DiffCounts, check_inputs, compute_changes
from ctsync.engage.outbox import (
    PendingChunk,
    count_pending,
    mark_handed,
    outbound_messages,
    prune_outbox,
    read_pending,
    reconcile_outbox,
    record_results,
)
from ctsync.engage.payloads import iso_timestamp, space_id_from
from ctsync.engage.pump import ResultPump
from ctsync.engage.state import (
    OUTBOX,
    Dialect,
    acquire_lock,
    connect,
    create_state_tables,
    heartbeat,
    now,
    release_lock,
    sync_runs,
)
from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import state_engine

logger = logging.getLogger(__name__)

CRASH_HOOK_ENV = "CTSYNC_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86
CHECKPOINTS = ("outbox_committed", "chunk_handed", "response_received", "results_committed")
DEFAULT_CHUNK_SIZE = 25_000
DEFAULT_COMMIT_LIMIT = 10_000
"""At most this many results share one transaction."""
HEARTBEAT_SECONDS = 5.0
KEEP_SENT_DAYS_ENV = "CTSYNC_KEEP_SENT_DAYS"
DEFAULT_KEEP_SENT_DAYS = 30
"""Sent and superseded messages stay in the outbox this many days (an audit trail), then go."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``diff`` (0, 0) when the diff starts, then ``send``."""


@dataclass(frozen=True)
class ChangePreview:
    change: str
    computation_class: str
    computation_key: str
    user_id: str | None
    anonymous_id: str | None
    value: str
    resend: bool
    """An earlier message is sent again (same messageId) rather than a new one."""


@dataclass
class SyncSummary:
    run_id: str
    destination: str
    destination_kind: str
    dry_run: bool
    status: str = "running"
    """``succeeded``; ``incomplete`` when something was rejected or is still pending; ``failed``."""
    entered: int = 0
    exited: int = 0
    traits_changed: int = 0
    sent: int = 0
    rejected: int = 0
    retried: int = 0
    failed: int = 0
    superseded: int = 0
    pending: int = 0
    """Messages still unconfirmed after the run (retried by the next one)."""
    retired_audiences: list[str] = field(default_factory=list)
    retired_traits: list[str] = field(default_factory=list)
    diff_seconds: float = 0.0
    """Diff plus outbox write."""
    send_seconds: float = 0.0
    rejections: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    """The most frequent (code, reason, count) of rejected and failed messages."""
    preview: list[ChangePreview] = field(default_factory=list)
    """Dry runs: a sample of what would be sent."""
    stopped_early: str | None = None
    """Why sending stopped before every pending message was tried, if it did."""
    pruned: int = 0
    """Messages older than the retention (``keep_sent_days``) deleted from the outbox, no longer needed."""

    @property
    def changes(self) -> int:
        return self.entered + self.exited + self.traits_changed

    @property
    def send_rate(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds > 0 else 0.0


def sync_destination(
    destination_name: str,
    *,
    warehouse: str,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    destination: Destination | None = None,
    secret_resolver: SecretResolver | None = None,
    wait_seconds: float = 10.0,
    space_id: str | None = None,
    engage_schema: str = ENGAGE_SCHEMA,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    preview_limit: int = 20,
    keep_sent_days: int | None = None,
) -> SyncSummary:
    """Sync the current audiences and computed traits to one destination.

    ``destination`` replaces the one built from the settings (tests, embedding). A second sync
    of the same destination (or, on DuckDB, any other writer of the file) waits up to
    ``wait_seconds`` and then raises CtsyncError. A dry run computes the diff and a preview,
    records the run as a dry run, and sends and stores nothing else.

    After sending, messages no later run needs (sent, or superseded and never in doubt) that are
    older than ``keep_sent_days`` (else ``CTSYNC_KEEP_SENT_DAYS``, else 30) leave the outbox; 0 keeps
    them all.
    """
    env = os.environ if environ is None else environ
    if chunk_size < 1:
        raise CtsyncError("chunk_size must be at least 1")
    keep_days = resolve_keep_sent_days(keep_sent_days, env)
    target = parse_warehouse(warehouse)
    if target.kind == "duckdb" and not Path(target.location).is_file():
        raise CtsyncError(f"no warehouse at {target.location}: load data and run `dbt build` first")
    run = _Run(
        destination_name=destination_name,
        space_id=space_id_from(env, space_id),
        engage_schema=engage_schema,
        chunk_size=chunk_size,
        preview_limit=preview_limit,
        progress=progress,
        crash=_CrashHook.from_environ(env),
        keep_sent_days=keep_days,
    )
    owned = destination is None
    dest = (
        destination
        if destination is not None
        else open_destination(destination_name, config_path=config_path, environ=env, secret_resolver=secret_resolver)
    )
    try:
        engine = state_engine(target)
        try:
            conn = connect(engine, wait_seconds=wait_seconds)
            try:
                return run.execute(conn, dest, dry_run=dry_run, wait_seconds=wait_seconds)
            finally:
                conn.close()
        finally:
            engine.dispose()
    finally:
        if owned:
            dest.close()


def resolve_keep_sent_days(value: int | None, environ: Mapping[str, str]) -> int:
    """Days sent messages stay in the outbox: ``value``, else ``CTSYNC_KEEP_SENT_DAYS``, else 30."""
    source = "keep_sent_days"
    if value is None:
        text = environ.get(KEEP_SENT_DAYS_ENV, "").strip()
        if not text:
            return DEFAULT_KEEP_SENT_DAYS
        source = KEEP_SENT_DAYS_ENV
        try:
            value = int(text)
        except ValueError:
            raise CtsyncError(f"{KEEP_SENT_DAYS_ENV} must be a whole number of days, not {text!r}") from None
    if value < 0:
        raise CtsyncError(f"{source} must be 0 (keep every message) or a number of days, not {value}")
    return value


class _CrashHook:
    """Test hook: exit the process abruptly at a named checkpoint (see the module docstring)."""

    def __init__(self, checkpoint: str | None, nth: int) -> None:
        self.checkpoint = checkpoint
        self.nth = nth
        self.seen = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> _CrashHook:
        spec = environ.get(CRASH_HOOK_ENV, "").strip()
        if not spec:
            return cls(None, 0)
        name, _, count = spec.partition(":")
        if name not in CHECKPOINTS or (count and not count.isdigit()):
            raise CtsyncError(f"{CRASH_HOOK_ENV} must be one of {', '.join(CHECKPOINTS)}, optionally with :<n>")
        return cls(name, int(count) if count else 1)

    def reached(self, checkpoint: str) -> None:
        if checkpoint != self.checkpoint:
            return
        self.seen += 1
        if self.seen >= self.nth:
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)


@dataclass
class _Run:
    destination_name: str
    space_id: str
    engage_schema: str
    chunk_size: int
    preview_limit: int
    progress: Progress | None
    crash: _CrashHook
    keep_sent_days: int = DEFAULT_KEEP_SENT_DAYS
    commit_limit: int = DEFAULT_COMMIT_LIMIT
    run_id: str = ""
    _last_heartbeat: float = 0.0
    _problems: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)

    def execute(self, conn: sa.Connection, dest: Destination, *, dry_run: bool, wait_seconds: float) -> SyncSummary:
        started = now()
        self.run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        summary = SyncSummary(self.run_id, self.destination_name, dest.kind, dry_run)
        dialect = Dialect.of(conn)
        with conn.begin():
            create_state_tables(conn)
        with conn.begin():
            check_inputs(conn, self.engage_schema)
        if dry_run:
            self._dry_run(conn, dialect, summary, started)
            return summary
        acquire_lock(conn, self.destination_name, self.run_id, wait_seconds=wait_seconds)
        try:
            self._start(conn, summary, started)
            try:
                self._diff(conn, dialect, summary, started)
                self.crash.reached("outbox_committed")
                self._send(conn, dialect, dest, summary)
                with conn.begin():
                    summary.pending = count_pending(conn, self.destination_name)
                if self.keep_sent_days:
                    with conn.begin():
                        summary.pruned = prune_outbox(
                            conn, self.destination_name, before=now() - timedelta(days=self.keep_sent_days)
                        )
                summary.status = (
                    "succeeded"
                    if summary.pending == 0 and summary.rejected == 0 and not summary.stopped_early
                    else "incomplete"
                )
                self._finish(conn, summary, error=None)
            except BaseException as exc:
                summary.status = "failed"
                self._abandon(conn, summary, exc)
                raise
        finally:
            try:
                release_lock(conn, self.destination_name, self.run_id)
            except sa.exc.SQLAlchemyError:
                logger.warning("could not release the sync lock of %s; the next run takes it over", self.run_id)
        summary.rejections = self._top_problems()
        return summary

    # -- phases ---------------------------------------------------------------------------

    def _start(self, conn: sa.Connection, summary: SyncSummary, started: datetime) -> None:
        with conn.begin():
            interrupted = conn.execute(
                sa.update(sync_runs)
                .where(
                    sync_runs.c.destination == self.destination_name,
                    sync_runs.c.status == "running",
                    sync_runs.c.run_id != self.run_id,
                )
                .values(
                    status="interrupted",
                    finished_at=started,
                    error="the process stopped before the run finished; its unconfirmed messages are resent",
                )
            ).rowcount
            conn.execute(
                sa.insert(sync_runs).values(
                    run_id=self.run_id,
                    destination=self.destination_name,
                    destination_kind=summary.destination_kind,
                    started_at=started,
                    status="running",
                    dry_run=False,
                    **{name: 0 for name in _COUNTERS},
                )
            )
        if interrupted:
            logger.warning("%s: %d earlier run(s) had been interrupted", self.destination_name, interrupted)

    def _diff(self, conn: sa.Connection, dialect: Dialect, summary: SyncSummary, started: datetime) -> None:
        self._report("diff", 0, 0)
        clock = time.perf_counter()
        with conn.begin():
            counts = compute_changes(conn, dialect, self.destination_name, self.engage_schema)
            reconciled = reconcile_outbox(
                conn,
                dialect,
                destination=self.destination_name,
                run_id=self.run_id,
                space_id=self.space_id,
                timestamp=iso_timestamp(started),
                at=now(),
            )
            conn.execute(sa.text(f"drop table if exists {CHANGES}"))
            _apply_counts(summary, counts)
            summary.superseded = reconciled.superseded
            self._save_counts(conn, summary)
        summary.diff_seconds = time.perf_counter() - clock
        logger.info(
            "%s: %d entered, %d exited, %d traits changed (%d resent with their messageId, %d superseded) in %.2f s",
            self.destination_name,
            summary.entered,
            summary.exited,
            summary.traits_changed,
            reconciled.reused,
            reconciled.superseded,
            summary.diff_seconds,
        )

    def _dry_run(self, conn: sa.Connection, dialect: Dialect, summary: SyncSummary, started: datetime) -> None:
        self._report("diff", 0, 0)
        clock = time.perf_counter()
        transaction = conn.begin()
        try:
            counts = compute_changes(conn, dialect, self.destination_name, self.engage_schema)
            _apply_counts(summary, counts)
            rows = conn.execute(
                sa.text(
                    f"""
                    select change, computation_class, computation_key, user_id, anonymous_id, value,
                           reuse_message_id is not null as resend
                    from {CHANGES}
                    order by change, computation_class, computation_key, person_id
                    limit :limit
                    """
                ),
                {"limit": self.preview_limit},
            ).all()
            summary.preview = [
                ChangePreview(
                    str(r.change),
                    str(r.computation_class),
                    str(r.computation_key),
                    r.user_id,
                    r.anonymous_id,
                    str(r.value),
                    bool(r.resend),
                )
                for r in rows
            ]
            summary.pending = int(
                conn.execute(
                    sa.text(f"select count(*) from {OUTBOX} where destination = :destination and status = 'pending'"),
                    {"destination": self.destination_name},
                ).scalar_one()
            )
        finally:
            transaction.rollback()  # a dry run keeps nothing of the diff
        summary.diff_seconds = time.perf_counter() - clock
        summary.status = "succeeded"
        with conn.begin():
            conn.execute(
                sa.insert(sync_runs).values(
                    run_id=self.run_id,
                    destination=self.destination_name,
                    destination_kind=summary.destination_kind,
                    started_at=started,
                    finished_at=now(),
                    status="succeeded",
                    dry_run=True,
                    **_counter_values(summary),
                )
            )

    def _send(self, conn: sa.Connection, dialect: Dialect, dest: Destination, summary: SyncSummary) -> None:
        clock = time.perf_counter()
        with conn.begin():
            total = count_pending(conn, self.destination_name)
        done = 0
        after = 0
        self._report("send", 0, total)
        while True:
            with conn.begin():
                chunk = read_pending(conn, self.destination_name, after_seq=after, limit=self.chunk_size)
            if not chunk:
                break
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
                            self._problems[(r.code, r.reason)] += 1
                    if time.monotonic() - self._last_heartbeat > HEARTBEAT_SECONDS:
                        heartbeat(conn, self.destination_name, self.run_id)
                        self._save_counts(conn, summary)
                        self._last_heartbeat = time.monotonic()
                self.crash.reached("results_committed")
                done += len(results)
                self._report("send", done, total)
        finally:
            pump.stop()
        return done

    def _finish(self, conn: sa.Connection, summary: SyncSummary, *, error: str | None) -> None:
        with conn.begin():
            conn.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.run_id == self.run_id)
                .values(status=summary.status, finished_at=now(), error=error, **_counter_values(summary))
            )
        logger.info(
            "%s: run %s %s: %d sent, %d rejected, %d failed, %d retried, %d pending, %d old messages pruned",
            self.destination_name,
            self.run_id,
            summary.status,
            summary.sent,
            summary.rejected,
            summary.failed,
            summary.retried,
            summary.pending,
            summary.pruned,
        )

    def _abandon(self, conn: sa.Connection, summary: SyncSummary, exc: BaseException) -> None:
        """Record a run that stopped on an error; its unconfirmed messages stay pending."""
        try:
            if conn.in_transaction():
                conn.rollback()
            with conn.begin():
                summary.pending = count_pending(conn, self.destination_name)
            self._finish(conn, summary, error=f"{type(exc).__name__}: {exc}"[:2000])
        except Exception:  # the original error matters more; the next run marks this one interrupted
            logger.warning("could not record the failure of run %s", self.run_id, exc_info=True)

    # -- helpers --------------------------------------------------------------------------

    def _save_counts(self, conn: sa.Connection, summary: SyncSummary) -> None:
        conn.execute(sa.update(sync_runs).where(sync_runs.c.run_id == self.run_id).values(**_counter_values(summary)))

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    def _top_problems(self, limit: int = 5) -> list[tuple[str | None, str | None, int]]:
        return [(code, reason, count) for (code, reason), count in self._problems.most_common(limit)]


_COUNTERS = (
    "entered",
    "exited",
    "traits_changed",
    "sent",
    "rejected",
    "retried",
    "failed",
    "superseded",
    "pending",
    "retired_audiences",
    "retired_traits",
    "pruned",
)


def _counter_values(summary: SyncSummary) -> dict[str, int]:
    values = {name: getattr(summary, name) for name in _COUNTERS}
    values["retired_audiences"] = len(summary.retired_audiences)
    values["retired_traits"] = len(summary.retired_traits)
    return values


def _apply_counts(summary: SyncSummary, counts: DiffCounts) -> None:
    summary.entered = counts.entered
    summary.exited = counts.exited
    summary.traits_changed = counts.traits_changed
    summary.retired_audiences = counts.retired_audiences
    summary.retired_traits = counts.retired_traits
