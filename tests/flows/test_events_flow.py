"""The event sync flow on Prefect's test server, against a CleverTap stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.events import sync_events_to_clevertap
from flows.outcomes import IncompleteRun
from tests.engage.conftest import PASSCODE_ENV, clevertap_entry, write_config
from tests.events.conftest import SCHEMA, Warehouse
from tests.servers.clevertap import CleverTapServer


def test_the_flow_sends_new_events_once_and_fails_while_some_are_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = Warehouse(str(tmp_path / "warehouse.duckdb"))
    warehouse.create()
    warehouse.add("product_viewed", 3)
    monkeypatch.setenv(PASSCODE_ENV, "test-passcode")
    with CleverTapServer() as server:
        config = write_config(tmp_path, {"ct": clevertap_entry(server)})

        summary = sync_events_to_clevertap("ct", schemas=[SCHEMA], warehouse=warehouse.url, config=str(config))
        again = sync_events_to_clevertap("ct", schemas=[SCHEMA], warehouse=warehouse.url, config=str(config))
        warehouse.add("app_launched", 1)  # a CleverTap system event: refused, so the run ends Failed
        with pytest.raises(IncompleteRun, match="rejected 1"):
            sync_events_to_clevertap("ct", schemas=[SCHEMA], warehouse=warehouse.url, config=str(config))

    assert (summary.sent, again.sent, again.queued) == (3, 0, 0)
    assert len(server.events) == 3
