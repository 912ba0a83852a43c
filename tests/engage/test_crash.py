"""Crash safety, proven: ``ctsync sync`` runs as a subprocess against a test server and is killed
at random points, many times over, while the data changes and the server misbehaves; then it is
allowed to finish.

Kill points, taken in turn (shuffled): SIGKILL after a random number of requests (between
batches); SIGKILL while the server holds a request (mid-request; the server applies it after the
client is gone), also with timeouts that are applied but never answered; SIGKILL at a random
moment (start-up, diff, outbox); and the ``CTSYNC_TEST_CRASH_AT`` hook, which exits the process
after the outbox commit, after a chunk is marked as handed over, after a response arrived but
before its commit, and after a commit. Some runs are not killed but meet a server that fails or
times out more often than they retry, so their messages stay pending, applied or not.

After every kill: the confirmed state is never ahead of the destination (every confirmed
messageId was accepted, with that value). At the end: the destination holds exactly the
warehouse's memberships and traits (the latest value per person and key), every message marked
sent arrived, nothing is left pending, and any duplicate is a repeat of the same messageId
(a new messageId only ever carries a different value than the previous one for that person and key).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ctsync.engage.run import CRASH_EXIT_CODE, CRASH_HOOK_ENV, sync_destination
from tests.engage.conftest import (
    EngageData,
    clevertap_entry,
    segment_entry,
    start_sync,
    sync_environment,
    wait_until,
    write_config,
)
from tests.servers import FakeHttpApi
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

SEED_ENV = "CTSYNC_TEST_CRASH_SEED"
"""Set it to explore other random sequences of kills, faults and data changes."""
AUDIENCES = {"buyers": False, "at_risk": False, "visitors": True}  # key: include_anonymous
USERS = [f"u{n}" for n in range(300)]
ANONYMOUS_ONLY = [f"anon-only-{n}" for n in range(40)]
MODES = (
    "between_requests",
    "mid_request",
    "applied_timeout",
    "random_moment",
    "outbox_committed",
    "chunk_handed",
    "response_received",
    "results_committed",
    "survives_faults",
)


class World:
    """The warehouse's truth, kept in Python as well, changed a little between runs."""

    def __init__(self, engage: EngageData, rng: random.Random) -> None:
        self.engage = engage
        self.rng = rng
        self.members: dict[str, set[str]] = {
            "buyers": {u for u in USERS if rng.random() < 0.5},
            "at_risk": {u for u in USERS if rng.random() < 0.3},
            "visitors": {u for u in USERS if rng.random() < 0.2} | {a for a in ANONYMOUS_ONLY if rng.random() < 0.7},
        }
        self.ltv: dict[str, float] = {u: float(rng.randrange(100)) for u in USERS if rng.random() < 0.4}
        self.write()

    def churn(self) -> None:
        for key, members in self.members.items():
            people = USERS + (ANONYMOUS_ONLY if AUDIENCES[key] else [])
            for person in self.rng.sample(people, k=len(people) // 10):
                members.symmetric_difference_update({person})
        for user in self.rng.sample(USERS, k=30):
            if user in self.ltv and self.rng.random() < 0.3:
                del self.ltv[user]
            else:
                self.ltv[user] = float(self.rng.randrange(100))
        self.write()

    def write(self) -> None:
        for key, include_anonymous in AUDIENCES.items():
            rows = [(None, p) if p.startswith("anon-only") else (p, "a" + p[1:]) for p in sorted(self.members[key])]
            self.engage.audience(key, rows, include_anonymous=include_anonymous)
        self.engage.trait("ltv", {(u, "a" + u[1:]): value for u, value in self.ltv.items()})

    def expected(self, person: str, key: str) -> Any:
        """What the destination must show for ``key``; ``None`` also accepts "never told"."""
        if key == "ltv":
            return self.ltv.get(person)
        return person in self.members[key] or None


def assert_shows(profile: dict[str, Any] | None, key: str, expected: Any, person: str) -> None:
    """The profile shows ``expected``; for None (not a member, no value): false, null or nothing."""
    shown = json.dumps((profile or {}).get(key))
    allowed = {"null", "false"} if expected is None else {json.dumps(expected)}
    assert shown in allowed, f"{person}/{key}: the destination shows {shown}, the warehouse says {expected!r}"


def in_flight(server: FakeHttpApi) -> bool:
    return any(request.finished == 0.0 for request in server.requests)


def wait_for_requests(server: FakeHttpApi, process: subprocess.Popen[str], count: int, *, holding: bool) -> None:
    """Until the server has seen ``count`` requests (and holds one, if ``holding``) or the process ended."""

    def reached() -> bool:
        enough = len(server.requests) >= count and (in_flight(server) or not holding)
        return enough or process.poll() is not None

    wait_until(reached, what=f"{count} requests")


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)


def crash_cycles(
    engage: EngageData,
    server: SegmentServer | CleverTapServer,
    config: Path,
    destination: str,
    *,
    cycles: int,
    rng: random.Random,
    world: World,
    after_each: Any,
) -> dict[str, int]:
    """Run the sync ``cycles`` times, killing it in the ways of MODES; returns kills per mode
    (and how many unkilled runs ended incomplete)."""
    kills: dict[str, int] = defaultdict(int)
    modes = [MODES[i % len(MODES)] for i in range(cycles)]
    rng.shuffle(modes)
    for mode in modes:
        if rng.random() < 0.8:
            world.churn()
        fault = rng.uniform(0.25, 0.45) if mode == "survives_faults" else rng.random()
        if fault < 0.15:  # retried within the run
            server.fail_next(1, rng.choice([429, 500, 503]), retry_after=0)
        elif fault < 0.25:
            server.drop_next(1, apply=rng.random() < 0.5)
        elif fault < 0.35:  # more failures than attempts: requests fail, their messages stay pending
            server.fail_next(12, 503)
        elif fault < 0.45:  # applied every time, never answered: in doubt
            server.time_out_next(9, hold_seconds=0.6, apply=True)
        env: dict[str, str] = {}
        if mode in ("outbox_committed", "chunk_handed", "response_received", "results_committed"):
            once_per_run = mode in ("outbox_committed", "chunk_handed")
            env[CRASH_HOOK_ENV] = f"{mode}:{1 if once_per_run else rng.randint(1, 4)}"
        server.delay = 0.3 if mode == "mid_request" else 0.02
        if mode == "applied_timeout":
            server.time_out_next(2, hold_seconds=0.6, apply=True)
        seen = len(server.requests)
        process = start_sync(engage.path, config, destination, **env)
        try:
            if mode == "between_requests":
                wait_for_requests(server, process, seen + rng.randint(1, 8), holding=False)
                kill(process)
            elif mode in ("mid_request", "applied_timeout"):
                wait_for_requests(server, process, seen + 1, holding=True)
                kill(process)
            elif mode == "random_moment":
                time.sleep(rng.uniform(0.1, 1.6))
                kill(process)
            process.wait(timeout=60)  # survives_faults: not killed; requests fail and stay pending
        finally:
            kill(process)
            process.wait(timeout=60)
            server.delay = 0.0
        if process.returncode in (-signal.SIGKILL, CRASH_EXIT_CODE):
            kills[mode] += 1
        else:
            assert process.returncode in (0, 1), process.stderr.read() if process.stderr else ""
            if process.returncode == 1:
                kills["incomplete, not killed"] += 1
        wait_until(lambda: not in_flight(server), what="held requests to finish")
        server.clear_faults()
        after_each()
    return dict(kills)


def finish(engage: EngageData, config: Path, destination: str) -> None:
    """Let it finish, then check that one more run has nothing left to do."""
    done = start_sync(engage.path, config, destination)
    _, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    again = sync_destination(destination, warehouse=str(engage.path), config_path=config, environ=sync_environment())
    assert (again.changes, again.sent, again.pending) == (0, 0, 0)
    assert {row["status"] for row in engage.outbox()} <= {"sent", "superseded"}


@pytest.mark.slow
def test_killed_again_and_again_the_segment_destination_ends_exactly_right(engage: EngageData, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get(SEED_ENV, "20240503")))
    world = World(engage, rng)
    with SegmentServer() as server:
        config = write_config(tmp_path, {"seg": segment_entry(server, max_batch_messages=5, concurrency=3)})

        def confirmed_never_ahead() -> None:
            accepted = {m["messageId"]: m for m in server.messages}
            for (key, _, person), (value, message_id) in engage.state().items():
                assert message_id in accepted, f"{key}/{person}: confirmed by {message_id}, never accepted"
                assert accepted[message_id]["traits"][key] == value

        kills = crash_cycles(
            engage, server, config, "seg", cycles=2 * len(MODES), rng=rng, world=world, after_each=confirmed_never_ahead
        )
        finish(engage, config, "seg")
        confirmed_never_ahead()

    assert kills.pop("incomplete, not killed", 0) >= 1, kills  # faults did leave messages pending
    assert sum(kills.values()) >= len(MODES) + 4, kills
    assert len(kills) >= len(MODES) - 2, kills  # most kinds of kill actually landed
    # The destination holds exactly the warehouse's values.
    for key in (*AUDIENCES, "ltv"):
        for person in USERS + ANONYMOUS_ONLY:
            profiles = server.traits_by_anonymous_id if person.startswith("anon-only") else server.traits_by_user_id
            assert_shows(profiles.get(person), key, world.expected(person, key), person)
    # Every accepted message is an outbox message, byte for byte the stored payload.
    outbox = {row["message_id"]: row for row in engage.outbox()}
    for message in server.messages:
        assert json.loads(outbox[message["messageId"]]["payload"]) == message
    # Everything marked sent arrived.
    arrived = set(server.message_ids())
    assert {mid for mid, row in outbox.items() if row["status"] == "sent"} <= arrived
    # Duplicates are repeats of the same messageId: no earlier message comes back after a later
    # one (Segment would drop it as a duplicate), and a new messageId repeats the previous value
    # only to undo a different value that was handed over in between (it may have arrived).
    history: dict[tuple[str, str], list[tuple[str, Any]]] = defaultdict(list)
    for message in server.messages:
        ((key, value),) = message["traits"].items()
        sequence = history[(message.get("userId") or message["anonymousId"], key)]
        if not sequence or sequence[-1][0] != message["messageId"]:
            sequence.append((message["messageId"], value))
    handed: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in outbox.values():
        if row["handoffs"] > 0:
            handed[(row["person_id"], row["computation_key"])].append(row)
    for (person, key), sequence in history.items():
        ids = [mid for mid, _ in sequence]
        assert len(ids) == len(set(ids)), f"{person}/{key}: an earlier message came back after a later one"
        for (first, before), (second, after) in itertools.pairwise(sequence):
            if before != after:
                continue
            low, high = outbox[first]["seq"], outbox[second]["seq"]
            undone = [r for r in handed[(person, key)] if low < r["seq"] < high and json.loads(r["value"]) != after]
            assert undone, f"{person}/{key}: {second} repeats the value {after!r} of {first} for no reason"
    repeats = len(server.messages) - len(arrived)
    assert repeats > 0  # the kills did cause resends, all of them with the same messageId


@pytest.mark.slow
def test_killed_again_and_again_clevertap_ends_exactly_right_and_never_confirms_a_rejection(
    engage: EngageData, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get(SEED_ENV, "7")))
    world = World(engage, rng)
    refused = {"u3", "u5", "u8"}
    with CleverTapServer(reject_identities=refused) as server:
        config = write_config(tmp_path, {"ct": clevertap_entry(server, batch_size=5, concurrency=3)})

        def record_values() -> set[tuple[str, str, str]]:
            values = set()
            for record in server.records:
                data = record["profileData"]
                person = record.get("identity") or data.get("Identity") or record["objectId"]
                values.update((person, key, json.dumps(value)) for key, value in data.items() if key != "Identity")
            return values

        def confirmed_never_ahead() -> None:
            accepted = record_values()
            for (key, _, person), (value, _) in engage.state().items():
                assert (person, key, json.dumps(value)) in accepted, f"{key}/{person} confirmed but never accepted"
                if server.reject_identities:
                    assert person not in refused, f"{person} was rejected yet confirmed"

        kills = crash_cycles(
            engage, server, config, "ct", cycles=len(MODES), rng=rng, world=world, after_each=confirmed_never_ahead
        )
        rejected = [row for row in engage.outbox() if row["status"] == "rejected"]
        assert {row["person_id"] for row in rejected} <= refused
        server.reject_identities = set()
        finish(engage, config, "ct")
        confirmed_never_ahead()

    assert sum(kills.values()) >= 6, kills
    for key in (*AUDIENCES, "ltv"):
        for person in USERS + ANONYMOUS_ONLY:
            anonymous = person.startswith("anon-only")
            profile = server.profile(object_id=person) if anonymous else server.profile(identity=person)
            assert_shows(profile, key, world.expected(person, key), person)
