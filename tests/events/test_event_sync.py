"""Event syncs to a CleverTap stand-in on 127.0.0.1: mapping on the wire, incremental, once per event id."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ctsync.errors import CtsyncError
from ctsync.events.run import sync_events
from tests.engage.conftest import ROOT, clevertap_entry, sync_environment, write_config
from tests.events.conftest import SCHEMA, T0, Warehouse, event_client
from tests.servers.clevertap import CleverTapServer

PRODUCTS = json.dumps([{"product_id": "p1", "Name": "Zen", "price": 9.5, "quantity": 2, "tags": ["x"]}])


def test_tracks_orders_pages_and_screens_arrive_as_the_destination_maps_them(
    warehouse: Warehouse, server: CleverTapServer
) -> None:
    warehouse.add("product_viewed", 2, product_name="Casio Watch", price=59.99)
    warehouse.add("order_completed", 1, order_id="ord-1", total=19.0, currency="USD", products=PRODUCTS)
    warehouse.add("app_launched", 1)
    warehouse.add("pages", 1, event=None, event_text=None, name="Home", url="https://x/", path="/")
    warehouse.add(
        "screens",
        1,
        event=None,
        event_text=None,
        name="Cart",
        anonymous_id="__g1",
        context_device_token="tok-1",
        context_os_name="iOS",
    )
    warehouse.add("tracks", 1, event="signed_up", event_text="Signed Up")  # an event with no table of its own

    with event_client(server) as client:
        summary = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)

    by_name = {event["evtName"]: event for event in server.events}
    assert sorted(by_name) == ["App Screen Viewed", "Charged", "Product Viewed", "Signed Up", "Web Page Viewed"]
    assert len(server.events) == 6
    viewed = by_name["Product Viewed"]
    assert viewed["type"] == "event" and viewed["identity"].startswith("u")
    assert viewed["ts"] == int(T0.timestamp()) or viewed["ts"] == int(T0.timestamp()) + 60
    assert viewed["evtData"]["product_name"] == "Casio Watch" and viewed["evtData"]["price"] == 59.99
    assert not any(key.startswith("context_") or key in ("sent_at", "received_at") for key in viewed["evtData"])
    charged = by_name["Charged"]["evtData"]
    assert (charged["Charged ID"], charged["Amount"], charged["Currency"]) == ("ord-1", 19.0, "USD")
    assert charged["Items"] == [{"product_id": "p1", "name": "Zen", "price": 9.5, "quantity": 2}]
    assert by_name["Web Page Viewed"]["evtData"]["url"] == "https://x/"
    screen = by_name["App Screen Viewed"]
    assert screen["objectId"] == "__g1" and "identity" not in screen
    assert server.tokens == [{"type": "token", "objectId": "__g1", "tokenData": {"id": "tok-1", "type": "apns"}}]
    assert (summary.queued, summary.sent, summary.rejected) == (7, 6, 1)  # App Launched is refused (513)
    assert summary.problems[0][0] == "513"
    assert summary.values_left_out == 1  # the products' nested tags
    assert summary.status == "incomplete"

    with event_client(server) as client:
        again = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    assert (again.queued, again.sent, again.status) == (0, 0, "succeeded")
    assert len(server.events) == 6

    warehouse.add("product_viewed", 3, start=2, product_name="Watch", price=1.0)
    with event_client(server) as client:
        more = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    assert (more.queued, more.sent) == (3, 3)
    assert len(server.events) == 9


def test_a_chosen_table_and_a_start_time(warehouse: Warehouse, server: CleverTapServer) -> None:
    warehouse.add("product_viewed", 5)
    warehouse.add("pages", 2, event=None, event_text=None)

    with event_client(server) as client:
        summary = sync_events(
            "clevertap",
            warehouse=warehouse.url,
            tables=[f"{SCHEMA}.product_viewed"],
            since=T0.replace(minute=3),
            client=client,
        )

    assert summary.sent == 2
    assert {event["evtName"] for event in server.events} == {"Product Viewed"}
    with event_client(server) as client, pytest.raises(CtsyncError, match="not an event table"):
        sync_events("clevertap", warehouse=warehouse.url, tables=[f"{SCHEMA}.identifies"], client=client)


def test_an_answer_that_says_nothing_arrived_is_retried_on_the_next_run(
    warehouse: Warehouse, server: CleverTapServer
) -> None:
    warehouse.add("product_viewed", 4)
    server.fail_next(10, 503)

    with event_client(server, batch_size=2) as client:
        first = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    assert (first.sent, first.pending, first.in_doubt, first.status) == (0, 4, 0, "incomplete")

    server.clear_faults()
    with event_client(server, batch_size=2) as client:
        second = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    assert (second.sent, second.status) == (4, "succeeded")
    assert len(server.events) == 4


def test_a_request_without_an_answer_is_never_repeated_on_its_own(
    warehouse: Warehouse, server: CleverTapServer
) -> None:
    warehouse.add("product_viewed", 4)
    server.time_out_next(1, hold_seconds=1.0, apply=True)  # CleverTap took it, the answer was lost

    with event_client(server, batch_size=2) as client:
        first = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    # the first request timed out: not retried, held in doubt; sending stops for this run
    assert (first.sent, first.in_doubt, first.pending, first.status) == (0, 2, 2, "incomplete")
    assert len(server.requests) == 1
    assert len(server.events) == 2

    with event_client(server, batch_size=2) as client:
        second = sync_events("clevertap", warehouse=warehouse.url, schemas=[SCHEMA], client=client)
    assert (second.sent, second.in_doubt, second.pending) == (2, 2, 0)
    assert len(server.requests) == 2
    assert Counter(json.dumps(event, sort_keys=True) for event in server.events).most_common(1)[0][1] == 1
    assert len(server.events) == 4  # each event once


def start_event_sync(warehouse: str, config: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ctsync.cli_events",
            "--destination",
            "ct",
            "--schema",
            SCHEMA,
            "--warehouse",
            warehouse,
            "--config",
            str(config),
            *extra,
        ],
        cwd=ROOT,
        env=sync_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("checkpoint", "rerun_exit"),
    [
        ("outbox_committed", 0),
        ("results_committed:2", 0),
        ("response_received:2", 1),  # the second request arrived; the rerun holds it as in doubt, never resends
    ],
)
def test_a_run_killed_midway_delivers_every_event_once_after_the_rerun(
    warehouse: Warehouse, server: CleverTapServer, tmp_path: Path, checkpoint: str, rerun_exit: int
) -> None:
    ids = warehouse.add("product_viewed", 25, product_name="Watch")
    for n, event_id in enumerate(ids):
        warehouse.sql(f"update {SCHEMA}.product_viewed set product_name = 'Watch {n}' where id = '{event_id}'")
    config = write_config(tmp_path, {"ct": clevertap_entry(server, batch_size=10, concurrency=1)})

    killed = start_event_sync(warehouse.url, config, CTSYNC_TEST_CRASH_AT=checkpoint)
    assert killed.returncode == 86, killed.stderr
    rerun = start_event_sync(warehouse.url, config)

    names = Counter(event["evtData"]["product_name"] for event in server.events)
    assert names == Counter({f"Watch {n}": 1 for n in range(25)}), rerun.stdout + rerun.stderr
    assert rerun.returncode == rerun_exit, rerun.stdout + rerun.stderr


def test_a_run_killed_after_the_hand_off_holds_the_request_until_it_is_resent_on_purpose(
    warehouse: Warehouse, server: CleverTapServer, tmp_path: Path
) -> None:
    warehouse.add("product_viewed", 25)
    config = write_config(tmp_path, {"ct": clevertap_entry(server, batch_size=10, concurrency=1)})

    killed = start_event_sync(warehouse.url, config, CTSYNC_TEST_CRASH_AT="chunk_handed:2")
    assert killed.returncode == 86, killed.stderr
    rerun = start_event_sync(warehouse.url, config)
    assert rerun.returncode == 1 and "in doubt" in rerun.stderr
    assert len(server.events) == 15  # the second request never left; it is held, not guessed at

    resent = start_event_sync(warehouse.url, config, "--resend-in-doubt")
    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert len(server.events) == 25
    assert len({json.dumps(event, sort_keys=True) for event in server.events}) == 25
