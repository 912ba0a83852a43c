"""Contract tests: fixtures written from the documents (``fixtures/*.json``, each naming its source),
replayed through ctsync's mappings: Engage's Identify, CleverTap profile records, CleverTap event
records, and Segment's /v1/batch request as the official Python client sends it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ctsync.destinations import OutboundMessage, SegmentHttpClient
from ctsync.destinations.clevertap import profile_record
from ctsync.engage.payloads import computation_id, engage_integrations, identify_payload
from ctsync.events.mapping import EventRejected, event_records
from tests.servers.segment import SegmentServer

FIXTURES = Path(__file__).parent / "fixtures"


def cases(name: str) -> list[Any]:
    document = json.loads((FIXTURES / name).read_text())
    assert document["source"], f"{name} must name the documents it was written from"
    return [pytest.param(case, id=case["name"]) for case in document["cases"]]


@pytest.mark.parametrize("case", cases("engage_identify.json"))
def test_identify_as_engage_sends_it(case: dict[str, Any]) -> None:
    change = case["change"]
    payload = identify_payload(
        computation_class=change["computation_class"],
        computation_key=change["computation_key"],
        value=change["value"],
        user_id=change["user_id"],
        anonymous_id=change["anonymous_id"],
        email=change["email"],
        message_id="personas_0001",
        timestamp="2024-05-03T19:42:50.066Z",
        original_timestamp="2024-05-03T19:42:50.066179Z",
        space_id="spa_o1E9",
        integrations=engage_integrations(change["destination_kind"]),
    )
    expected = case["identify"]
    personas = payload["context"]["personas"]
    assert personas.pop("computation_id") == computation_id(change["computation_class"], change["computation_key"])
    assert payload["context"].pop("library")["name"] == "ctsync"
    assert payload.pop("messageId") == "personas_0001"
    assert payload == expected


@pytest.mark.parametrize("case", cases("clevertap_profiles.json"))
def test_identify_as_a_clevertap_profile_record(case: dict[str, Any]) -> None:
    left_out: list[str] = []
    assert profile_record(case["identify"], left_out) == case["record"]
    assert left_out == case["left_out"]


@pytest.mark.parametrize("case", cases("clevertap_events.json"))
def test_warehouse_rows_as_clevertap_event_records(case: dict[str, Any]) -> None:
    if case["rejected"] is not None:
        with pytest.raises(EventRejected) as refused:
            event_records(case["row"], case["kind"])
        assert refused.value.code == case["rejected"]
        return
    mapped = event_records(case["row"], case["kind"])
    assert mapped.records == case["records"]
    assert mapped.left_out == case["left_out"]


def test_a_batch_request_as_the_official_python_client_sends_it() -> None:
    """segment/analytics/request.py: body {batch, sentAt (datetime.isoformat() in UTC), writeKey}; Basic auth
    with the write key and an empty password; Content-Type application/json; X-Retry-Count on retries only."""
    message = OutboundMessage("m1", {"type": "identify", "userId": "u1", "traits": {"a": True}, "messageId": "m1"})
    with SegmentServer("wk") as server, SegmentHttpClient("wk", base_url=server.url) as client:
        server.fail_next(1, 500)
        before = datetime.now(UTC)
        results = [r for batch in client.deliver([message]) for r in batch]

    assert [r.status.value for r in results] == ["sent"]
    first, retry = server.requests
    body = retry.json()
    assert list(body) == ["batch", "sentAt", "writeKey"]
    assert body["batch"] == [message.payload]
    assert body["writeKey"] == "wk"
    assert datetime.fromisoformat(body["sentAt"]) >= before and body["sentAt"].endswith("+00:00")
    assert retry.headers["authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    assert retry.headers["content-type"] == "application/json"
    assert "x-retry-count" not in first.headers and retry.headers["x-retry-count"] == "1"
