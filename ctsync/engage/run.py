"""One sync run: diff against confirmed state, fill the outbox, send, confirm what was acknowledged.

    lock -> diff + mass-change guard + outbox (one transaction) -> send (:mod:`ctsync.engage.send`)
        -> counts per audience and trait (:mod:`ctsync.engage.tally`)

A crash anywhere leaves every unconfirmed message ``pending`` (or, if the data changed meanwhile,
``superseded`` but remembered as possibly delivered); the next run sends them again with the
same messageId. Confirmed state only ever moves on an acknowledgement. A run the mass-change guard
refuses (:mod:`ctsync.engage.guard`) writes nothing but its ``sync_runs`` row and its counts, and
raises MassChangeRefused. Crash-safety tests stop the process at named points
(:mod:`ctsync.engage.crash`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ctsync.destinations.base import Destination
from ctsync.destinations.config import SecretResolver, open_destination
from ctsync.engage.crash import CRASH_EXIT_CODE, CRASH_HOOK_ENV, CrashHook
from ctsync.engage.diff import CHANGES, ENGAGE_SCHEMA, DiffCounts, check_inputs, compute_changes, emails_relation
from ctsync.engage.guard import MassChangeGuard, MassChangeRefused, resolve_guard
from ctsync.engage.outbox import count_pending, prune_outbox, reconcile_outbox
from ctsync.engage.payloads import engage_integrations, iso_original_timestamp, iso_timestamp, space_id_from
from ctsync.engage.preview import check_output_path, preview_changes, write_changes
from ctsync.engage.send import DEFAULT_CHUNK_SIZE, Sender, save_counts
from ctsync.engage.source import EngageSource, ExposedEngage, expose, resolve_engage_source
from ctsync.engage.state import (
    Dialect,
    acquire_lock,
    connect,
    create_state_tables,
    now,
    release_lock,
    sync_runs,
)
from ctsync.engage.summary import COUNTERS, ChangePreview, ComputationCounts, SyncSummary, counter_values
from ctsync.engage.tally import (
    add_results,
    count_changes,
    create_run_computations_table,
    save_run_computations,
)
from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import state_engine

__all__ = [
    "CRASH_EXIT_CODE",
    "CRASH_HOOK_ENV",
    "ChangePreview",
    "ComputationCounts",
    "MassChangeRefused",
    "SyncSummary",
    "resolve_keep_sent_days",
    "sync_destination",
]

logger = logging.getLogger(__name__)

KEEP_SENT_DAYS_ENV = "CTSYNC_KEEP_SENT_DAYS"
DEFAULT_KEEP_SENT_DAYS = 30
"""Sent and superseded messages stay in the outbox this many days (an audit trail), then go."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``diff`` (0, 0) when the diff starts, then ``send``."""


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
    allow_mass_change: bool = False,
    mass_change_share: float | None = None,
    mass_change_floor: int | None = None,
    output: str | os.PathLike[str] | None = None,
    engage_source: str | EngageSource | None = None,
) -> SyncSummary:
    """Sync the current audiences and computed traits to one destination.

    ``engage_source`` (else ``CTSYNC_ENGAGE_SOURCE``) reads the engage relations from elsewhere than
    ``warehouse``, which then only keeps the sync's state (:mod:`ctsync.engage.source`): ``spark``,
    ``spark:SCHEMA``, ``sc://...`` or a folder of Parquet folders. A DuckDB state file is created if missing.

    ``destination`` replaces the one built from the settings (tests, embedding). A second sync
    of the same destination (or, on DuckDB, any other writer of the file) waits up to
    ``wait_seconds`` and then raises CtsyncError. A dry run computes the diff, a preview and the
    mass-change verdict, writes the whole diff to ``output`` (CSV) when given, records the run as a
    dry run, and sends and stores nothing else.

    A run that would exit (null) more than ``mass_change_share`` of an audience's confirmed members
    (a trait's confirmed values), at least ``mass_change_floor`` people, raises MassChangeRefused
    before anything is written or sent, unless ``allow_mass_change`` (see :mod:`ctsync.engage.guard`).

    After sending, messages no later run needs (sent, or superseded and never in doubt) that are
    older than ``keep_sent_days`` (else ``CTSYNC_KEEP_SENT_DAYS``, else 30) leave the outbox; 0 keeps
    them all.
    """
    env = os.environ if environ is None else environ
    if chunk_size < 1:
        raise CtsyncError("chunk_size must be at least 1")
    if output is not None and not dry_run:
        raise CtsyncError("--output writes the diff of a dry run: add --dry-run")
    keep_days = resolve_keep_sent_days(keep_sent_days, env)
    guard = resolve_guard(share=mass_change_share, floor=mass_change_floor, allow=allow_mass_change, environ=env)
    target = parse_warehouse(warehouse)
    source = resolve_engage_source(engage_source, env)
    new_state: Path | None = None
    if target.kind == "duckdb" and not Path(target.location).is_file():
        if source is None:
            raise CtsyncError(f"no warehouse at {target.location}: load data and run `dbt build` first")
        new_state = Path(target.location)
        new_state.parent.mkdir(parents=True, exist_ok=True)
        logger.warning("%s: a new state database, nothing confirmed yet: every current value is sent", target.location)
    run = _Run(
        destination_name=destination_name,
        space_id=space_id_from(env, space_id),
        engage_schema=engage_schema,
        chunk_size=chunk_size,
        preview_limit=preview_limit,
        progress=progress,
        crash=CrashHook.from_environ(env),
        guard=guard,
        keep_sent_days=keep_days,
        output=check_output_path(output) if output is not None else None,
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
                if source is not None:
                    run.source = expose(conn, source)
                    run.engage_schema = run.source.schema
                return run.execute(conn, dest, dry_run=dry_run, wait_seconds=wait_seconds)
            finally:
                conn.close()
        finally:
            engine.dispose()
    except BaseException:
        if new_state is not None and run.source is None:  # the source could not be read: leave no empty state
            for leftover in (new_state, new_state.with_name(new_state.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
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


@dataclass
class _Run:
    destination_name: str
    space_id: str
    engage_schema: str
    chunk_size: int
    preview_limit: int
    progress: Progress | None
    crash: CrashHook
    guard: MassChangeGuard
    keep_sent_days: int = DEFAULT_KEEP_SENT_DAYS
    output: Path | None = None
    run_id: str = ""
    destination_kind: str = "segment"
    source: ExposedEngage | None = None
    """The engage relations, when read from an engage source into the state database for the run."""

    def execute(self, conn: sa.Connection, dest: Destination, *, dry_run: bool, wait_seconds: float) -> SyncSummary:
        started = now()
        self.run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        summary = SyncSummary(self.run_id, self.destination_name, dest.kind, dry_run)
        self.destination_kind = dest.kind
        if self.source is not None:
            summary.engage_source = self.source.source
            summary.engage_rows = self.source.rows
            summary.engage_read_seconds = self.source.seconds
        dialect = Dialect.of(conn)
        with conn.begin():
            create_state_tables(conn)
            create_run_computations_table(conn)
        with conn.begin():
            check_inputs(conn, self.engage_schema)
        if dry_run:
            self._dry_run(conn, dialect, summary, started)
            return summary
        acquire_lock(conn, self.destination_name, self.run_id, wait_seconds=wait_seconds)
        sender = Sender(self.destination_name, self.run_id, self.chunk_size, self.crash, self._report)
        try:
            self._start(conn, summary, started)
            try:
                self._diff(conn, dialect, summary, started)
                self.crash.reached("outbox_committed")
                sender.send(conn, dialect, dest, summary)
                self._count_results(conn, summary, sender.first_seq)
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
            except MassChangeRefused as refused:
                summary.status = "refused"
                self._abandon(conn, summary, refused, error=str(refused), first_seq=None)
                raise
            except BaseException as exc:
                summary.status = "failed"
                error = f"{type(exc).__name__}: {exc}"[:2000]
                self._abandon(conn, summary, exc, error=error, first_seq=sender.first_seq)
                raise
        finally:
            try:
                release_lock(conn, self.destination_name, self.run_id)
            except sa.exc.SQLAlchemyError:
                logger.warning("could not release the sync lock of %s; the next run takes it over", self.run_id)
        summary.rejections = sender.top_problems()
        summary.left_out_reasons = sender.top_left_out()
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
                    **{name: 0 for name in COUNTERS},
                )
            )
        if interrupted:
            logger.warning("%s: %d earlier run(s) had been interrupted", self.destination_name, interrupted)

    def _diff(self, conn: sa.Connection, dialect: Dialect, summary: SyncSummary, started: datetime) -> None:
        """Diff, guard and outbox in one transaction: a refused run rolls all of it back."""
        self._report("diff", 0, 0)
        clock = time.perf_counter()
        with conn.begin():
            counts = compute_changes(conn, dialect, self.destination_name, self.engage_schema)
            self._weigh(conn, summary, counts)
            if summary.mass_changes and not self.guard.allow:
                raise MassChangeRefused(str(summary.mass_change), summary)
            reconciled = reconcile_outbox(
                conn,
                dialect,
                destination=self.destination_name,
                run_id=self.run_id,
                space_id=self.space_id,
                timestamp=iso_timestamp(started),
                original_timestamp=iso_original_timestamp(started),
                integrations=engage_integrations(self.destination_kind),
                emails=emails_relation(conn, self.engage_schema),
                at=now(),
            )
            conn.execute(sa.text(f"drop table if exists {CHANGES}"))
            summary.superseded = reconciled.superseded
            save_counts(conn, self.run_id, summary)
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
        if summary.mass_change:
            logger.warning("%s: %s", self.destination_name, summary.mass_change)

    def _weigh(self, conn: sa.Connection, summary: SyncSummary, counts: DiffCounts) -> None:
        """Put the diff's counts, total and per computation, in ``summary``, with the guard's verdict."""
        summary.entered = counts.entered
        summary.exited = counts.exited
        summary.traits_changed = counts.traits_changed
        summary.retired_audiences = counts.retired_audiences
        summary.retired_traits = counts.retired_traits
        summary.computations = count_changes(conn, self.destination_name)
        past = self.guard.mark(summary.computations)
        if past:
            summary.mass_change = self.guard.verdict(self.destination_name, past, dry_run=summary.dry_run)

    def _dry_run(self, conn: sa.Connection, dialect: Dialect, summary: SyncSummary, started: datetime) -> None:
        self._report("diff", 0, 0)
        clock = time.perf_counter()
        transaction = conn.begin()
        try:
            counts = compute_changes(conn, dialect, self.destination_name, self.engage_schema)
            self._weigh(conn, summary, counts)
            summary.preview = preview_changes(conn, dialect, self.preview_limit)
            if self.output is not None:
                write_changes(conn, dialect, self.output)
                summary.output = str(self.output)
            summary.computations = add_results(
                conn, summary.computations, destination=self.destination_name, run_id=self.run_id, first_seq=None
            )
            summary.pending = count_pending(conn, self.destination_name)
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
                    error=summary.mass_change,
                    **counter_values(summary),
                )
            )
            save_run_computations(conn, self.run_id, self.destination_name, summary.computations)

    def _count_results(self, conn: sa.Connection, summary: SyncSummary, first_seq: int | None) -> None:
        with conn.begin():
            summary.pending = count_pending(conn, self.destination_name)
            summary.computations = add_results(
                conn, summary.computations, destination=self.destination_name, run_id=self.run_id, first_seq=first_seq
            )

    def _finish(self, conn: sa.Connection, summary: SyncSummary, *, error: str | None) -> None:
        with conn.begin():
            conn.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.run_id == self.run_id)
                .values(status=summary.status, finished_at=now(), error=error, **counter_values(summary))
            )
            save_run_computations(conn, self.run_id, self.destination_name, summary.computations)
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

    def _abandon(
        self, conn: sa.Connection, summary: SyncSummary, exc: BaseException, *, error: str, first_seq: int | None
    ) -> None:
        """Record a run that stopped on an error or was refused; its unconfirmed messages stay pending."""
        try:
            if conn.in_transaction():
                conn.rollback()
            self._count_results(conn, summary, first_seq)
            self._finish(conn, summary, error=error)
        except Exception:  # the original error matters more; the next run marks this one interrupted
            logger.warning("could not record the end of run %s (%s)", self.run_id, type(exc).__name__, exc_info=True)

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)
