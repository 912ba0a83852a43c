"""Two syncs to the same destination at once: the second waits a bounded time or is refused,
never interleaves; a crashed run's lock does not block forever."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctsync.destinations import SegmentHttpClient
from ctsync.engage.run import SyncSummary, sync_destination
from ctsync.errors import WarehouseBusy
from tests.engage.conftest import (
    EngageData,
    segment_client,
    segment_entry,
    start_sync,
    sync_environment,
    users,
    wait_until,
    write_config,
)
from tests.servers.segment import SegmentServer


def one_message_per_member(server: SegmentServer) -> None:
    per_person = Counter((m["userId"], m["context"]["personas"]["computation_key"]) for m in server.messages)
    assert set(per_person.values()) == {1}, "a change was sent twice: two syncs interleaved"


def test_a_second_process_is_refused_while_the_first_holds_the_warehouse(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(*range(60)))
    with SegmentServer(delay=0.25) as server:
        config = write_config(tmp_path, {"seg": segment_entry(server, max_batch_messages=10, concurrency=1)})
        first = start_sync(engage.path, config, "seg")
        try:
            wait_until(lambda: len(server.requests) >= 1, what="the first sync to start sending")

            with pytest.raises(WarehouseBusy, match=r"open for writing by process \d+ .*waited 0\.2 s"):
                sync_destination(
                    "seg", warehouse=str(engage.path), config_path=config, environ=sync_environment(), wait_seconds=0.2
                )
        finally:
            _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        assert len(server.messages) == 60
        one_message_per_member(server)


def test_a_second_process_that_waits_long_enough_runs_after_the_first(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(*range(30)))
    with SegmentServer(delay=0.2) as server:
        config = write_config(tmp_path, {"seg": segment_entry(server, max_batch_messages=10, concurrency=1)})
        first = start_sync(engage.path, config, "seg")
        wait_until(lambda: len(server.requests) >= 1, what="the first sync to start sending")

        second = sync_destination(
            "seg", warehouse=str(engage.path), config_path=config, environ=sync_environment(), wait_seconds=30
        )

        assert first.wait(timeout=30) == 0
        assert (second.entered, second.sent) == (0, 0)  # everything was confirmed by the first
        one_message_per_member(server)


def test_a_second_sync_in_the_same_process_is_refused_by_the_lock(engage: EngageData) -> None:
    engage.audience("vip", users(*range(40)))
    with SegmentServer(delay=0.2) as server, segment_client(server, max_batch_messages=10, concurrency=1) as slow:
        results: list[SyncSummary] = []
        first = threading.Thread(
            target=lambda: results.append(
                sync_destination("segment", warehouse=str(engage.path), destination=slow, environ={})
            )
        )
        first.start()
        wait_until(lambda: len(server.requests) >= 1, what="the first sync to start sending")

        with (
            segment_client(server) as other,
            pytest.raises(WarehouseBusy, match=r"another sync to destination 'segment' is running: run \S+ \(pid"),
        ):
            sync_destination("segment", warehouse=str(engage.path), destination=other, environ={}, wait_seconds=0.3)

        first.join(timeout=30)
        assert results[0].sent == 40
        one_message_per_member(server)


def test_a_lock_left_by_a_dead_process_is_taken_over(
    engage: EngageData, segment: SegmentHttpClient, segment_server: SegmentServer
) -> None:
    engage.audience("vip", users(1))
    sync_destination("segment", warehouse=str(engage.path), destination=segment, environ={})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    engage.sql(
        "insert into ctsync.sync_locks select 'segment', 'crashed-run', :host, :pid, now(), now()",
        host=socket.gethostname(),
        pid=dead_pid,
    )
    engage.sql(
        "insert into ctsync.sync_runs (run_id, destination, started_at, status, dry_run, entered, exited, "
        "traits_changed, sent, rejected, retried, failed, superseded, pending, retired_audiences, retired_traits) "
        "values ('crashed-run', 'segment', now(), 'running', false, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)"
    )
    engage.audience("vip", users(1, 2))

    summary = sync_destination("segment", warehouse=str(engage.path), destination=segment, environ={}, wait_seconds=0)

    assert summary.sent == 1
    statuses = {run["run_id"]: run["status"] for run in engage.runs()}
    assert statuses["crashed-run"] == "interrupted"
    assert engage.sql("select count(*) from ctsync.sync_locks") == [(0,)]


def test_a_live_holder_elsewhere_blocks_until_its_heartbeat_goes_stale(
    engage: EngageData, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1))
    sync_destination("segment", warehouse=str(engage.path), destination=segment, environ={})
    recent = datetime.now(UTC) - timedelta(minutes=1)
    engage.sql("insert into ctsync.sync_locks values ('segment', 'elsewhere', 'another-host', 1, :at, :at)", at=recent)

    with pytest.raises(WarehouseBusy, match="pid 1 on another-host"):
        sync_destination("segment", warehouse=str(engage.path), destination=segment, environ={}, wait_seconds=0.1)

    stale = datetime.now(UTC) - timedelta(hours=1)
    engage.sql("update ctsync.sync_locks set heartbeat_at = :at", at=stale)
    summary = sync_destination("segment", warehouse=str(engage.path), destination=segment, environ={}, wait_seconds=0)
    assert summary.status == "succeeded"
