"""Event syncs read ctsync's own tables, loaded from CleverTap exports, by Segment's column names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ctsync.events.run import sync_events
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.conftest import event, write_export
from tests.events.conftest import event_client
from tests.postgres import fresh_database
from tests.servers.clevertap import CleverTapServer


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield str(tmp_path / "warehouse.duckdb")
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def server() -> Iterator[CleverTapServer]:
    with CleverTapServer() as running:
        yield running


def test_push_tokens_and_devices_of_loaded_events_reach_clevertap(
    tmp_path: Path, warehouse: str, server: CleverTapServer
) -> None:
    apple = event("Product Viewed", 20240312094500, {"Product name": "Casio Watch"}, objectId="__g1", push_token="9f1c")
    apple["deviceInfo"] = {"make": "Apple", "model": "iPhone15,2", "osVersion": "17.3", "dpi": 460}
    android = event("Product Viewed", 20240312094501, {"Product name": "Rain Jacket"}, objectId="__g2")
    android["profile"]["push_token"] = "fcm:dGhp"
    android["deviceInfo"] = {"make": "samsung", "sdkVersion": 60102}
    write_export(tmp_path / "export" / "1700000001-1710000000-Product-Viewed-20240312-0-3.json.gz", [apple, android])
    assert not load_export_files([str(tmp_path / "export")], LoadOptions(nickname="Shop"), warehouse=warehouse).problems

    with event_client(server) as client:
        summary = sync_events("clevertap", warehouse=warehouse, schemas=["shop"], client=client)

    assert (summary.sent, summary.rejected) == (2, 0)
    assert sorted(server.tokens, key=lambda token: token["objectId"]) == [
        {"type": "token", "objectId": "__g1", "tokenData": {"id": "9f1c", "type": "apns"}},  # an Apple device
        {"type": "token", "objectId": "__g2", "tokenData": {"id": "dGhp", "type": "fcm"}},
    ]
    for sent in server.events:
        assert sent["evtName"] == "Product Viewed" and sent["evtData"]["product_name"]
        assert not any(key.startswith("context_") or key == "sent_at" for key in sent["evtData"])
