"""SegmentHttpClient against a real Segment-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ctsync.destinations import DeliveryResult, DeliveryStatus, OutboundMessage, SegmentHttpClient
from ctsync.destinations.http import RetryPolicy, parse_retry_after
from ctsync.errors import CtsyncError
from tests.servers.segment import SegmentServer

WRITE_KEY = "wk_secret_do_not_log_7f3a"
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01, max_elapsed=5)


def identify(n: int, **traits: Any) -> OutboundMessage:
    message_id = f"personas_{n:06d}"
    payload = {
        "type": "identify",
        "userId": f"u{n}",
        "anonymousId": f"a{n}",
        "traits": {"first_time_shopper": True, **traits},
        "context": {
            "personas": {
                "computation_class": "audience",
                "computation_id": "aud_1",
                "computation_key": "first_time_shopper",
                "namespace": "spa_1",
                "space_id": "spa_1",
            }
        },
        "messageId": message_id,
        "timestamp": "2024-05-03T19:42:50.066Z",
    }
    return OutboundMessage(message_id, payload)


def identifies(count: int, **traits: Any) -> list[OutboundMessage]:
    return [identify(n, **traits) for n in range(count)]


def deliver_all(client: SegmentHttpClient, messages: list[OutboundMessage]) -> list[DeliveryResult]:
    results = [result for chunk in client.deliver(messages) for result in chunk]
    assert Counter(r.message_id for r in results) == Counter(m.message_id for m in messages)
    return results


def by_id(results: list[DeliveryResult]) -> dict[str, DeliveryResult]:
    return {result.message_id: result for result in results}


@pytest.fixture
def server() -> Iterator[SegmentServer]:
    with SegmentServer(WRITE_KEY) as running:
        yield running


@pytest.fixture
def client(server: SegmentServer) -> Iterator[SegmentHttpClient]:
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, timeout=0.5, retry=FAST_RETRY, concurrency=2) as made:
        yield made


def test_sends_identify_calls_with_basic_auth_and_all_are_sent(
    server: SegmentServer, client: SegmentHttpClient
) -> None:
    messages = identifies(10, email="x@y.com")

    results = deliver_all(client, messages)

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    assert {r.attempts for r in results} == {1}
    assert [m.payload for m in messages] == server.messages
    assert server.traits_by_user_id["u3"] == {"first_time_shopper": True, "email": "x@y.com"}
    assert server.traits_by_anonymous_id["a3"] == {"first_time_shopper": True, "email": "x@y.com"}
    (request,) = server.requests
    expected = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    assert request.path == "/v1/batch"
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/json"


def test_each_attempt_carries_sent_at_and_the_write_key_and_retries_say_their_count(
    server: SegmentServer, client: SegmentHttpClient
) -> None:
    server.fail_next(2, 503)
    before = datetime.now(UTC)

    deliver_all(client, identifies(3))

    first, second, third = server.requests
    bodies = [request.json() for request in (first, second, third)]
    for body in bodies:
        assert list(body) == ["batch", "sentAt", "writeKey"]
        assert body["writeKey"] == WRITE_KEY
        sent_at = datetime.fromisoformat(body["sentAt"])
        assert sent_at.utcoffset() is not None and sent_at.utcoffset().total_seconds() == 0
        assert before <= sent_at <= datetime.now(UTC)
        assert body["sentAt"].endswith("+00:00")  # as datetime.isoformat() writes it in the official client
    assert [body["batch"] for body in bodies[1:]] == [bodies[0]["batch"]] * 2
    assert bodies[0]["sentAt"] < bodies[1]["sentAt"] < bodies[2]["sentAt"]  # stamped per attempt
    assert "x-retry-count" not in first.headers
    assert (second.headers["x-retry-count"], third.headers["x-retry-count"]) == ("1", "2")
    assert first.headers["user-agent"].startswith("ctsync/")


def test_batches_with_their_stamp_stay_under_the_byte_limit(server: SegmentServer) -> None:
    limit = 40_000
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, max_batch_bytes=limit, max_message_bytes=30_000) as made:
        deliver_all(made, identifies(400, note="x" * 300))

    assert len(server.requests) > 1
    assert max(len(request.body) for request in server.requests) <= limit


def test_fills_in_a_missing_message_id_from_the_outbox(server: SegmentServer, client: SegmentHttpClient) -> None:
    message = identify(1)
    del message.payload["messageId"]

    deliver_all(client, [message])

    assert server.message_ids() == [message.message_id]


def test_batches_hold_at_most_max_batch_messages(server: SegmentServer) -> None:
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, max_batch_messages=10) as client:
        deliver_all(client, identifies(25))

    sizes = sorted(len(request.json()["batch"]) for request in server.requests)
    assert sizes == [5, 10, 10]


def test_default_batches_stay_under_475000_bytes_and_2500_messages(
    server: SegmentServer, client: SegmentHttpClient
) -> None:
    messages = identifies(3000, note="x" * 300)

    results = deliver_all(client, messages)

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    assert len(server.requests) > 1
    for request in server.requests:
        assert len(request.body) <= 475_000
        assert len(request.json()["batch"]) <= 2500
    assert sorted(server.message_ids()) == sorted(m.message_id for m in messages)


def test_batches_are_cut_at_max_batch_bytes(server: SegmentServer) -> None:
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, max_batch_bytes=40_000) as client:
        deliver_all(client, identifies(60, note="y" * 1500))

    assert len(server.requests) >= 3
    assert max(len(request.body) for request in server.requests) <= 40_000


def test_a_message_over_32_kb_is_rejected_and_never_sent(server: SegmentServer, client: SegmentHttpClient) -> None:
    big = identify(99, blob="z" * 33_000)
    messages = [*identifies(3), big]

    results = by_id(deliver_all(client, messages))

    assert results[big.message_id].status is DeliveryStatus.REJECTED
    assert results[big.message_id].code == "too_large"
    assert "32 KB" in (results[big.message_id].reason or "")
    assert big.message_id not in server.message_ids()
    assert all(results[m.message_id].status is DeliveryStatus.SENT for m in messages[:3])


def test_a_message_without_user_or_anonymous_id_is_rejected_locally(
    server: SegmentServer, client: SegmentHttpClient
) -> None:
    orphan = identify(5)
    del orphan.payload["userId"], orphan.payload["anonymousId"]

    results = by_id(deliver_all(client, [identify(1), orphan]))

    assert results[orphan.message_id].status is DeliveryStatus.REJECTED
    assert results[orphan.message_id].code == "no_user_anon_id"
    assert server.message_ids() == [identify(1).message_id]


@pytest.mark.parametrize("status", [408, 410, 429, 460, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_then_sent(
    server: SegmentServer, client: SegmentHttpClient, status: int
) -> None:
    server.fail_next(2, status)

    results = deliver_all(client, identifies(5))

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    assert {r.attempts for r in results} == {3}
    assert server.statuses() == [status, status, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422, 501, 505])
def test_other_refusals_are_rejected_without_retry(
    server: SegmentServer, client: SegmentHttpClient, status: int
) -> None:
    server.fail_next(1, status, body={"code": "nope", "message": f"refused with {status}"})

    results = deliver_all(client, identifies(5))

    assert {r.status for r in results} == {DeliveryStatus.REJECTED}
    assert {r.code for r in results} == {str(status)}
    assert {r.reason for r in results} == {f"HTTP {status}: refused with {status}"}
    assert len(server.requests) == 1
    assert server.messages == []


def test_persistent_5xx_fails_after_the_configured_attempts(server: SegmentServer, client: SegmentHttpClient) -> None:
    server.fail_next(10, 503)

    results = deliver_all(client, identifies(5))

    assert {r.status for r in results} == {DeliveryStatus.FAILED}
    assert {r.code for r in results} == {"503"}
    assert {r.attempts for r in results} == {FAST_RETRY.max_attempts}
    assert len(server.requests) == FAST_RETRY.max_attempts


def test_retry_after_is_honoured(server: SegmentServer, client: SegmentHttpClient) -> None:
    server.fail_next(1, 429, retry_after=1)

    started = time.monotonic()
    results = deliver_all(client, identifies(3))

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    first, second = server.requests
    assert second.started - first.started >= 0.95
    assert time.monotonic() - started < 5


def test_a_retry_after_beyond_the_time_budget_fails_without_waiting(
    server: SegmentServer,
) -> None:
    server.fail_next(1, 429, retry_after=120)
    retry = RetryPolicy(max_attempts=5, initial_backoff=0.001, max_elapsed=2)

    with SegmentHttpClient(WRITE_KEY, base_url=server.url, retry=retry) as client:
        started = time.monotonic()
        results = deliver_all(client, identifies(3))

    assert time.monotonic() - started < 1
    assert {(r.status, r.code) for r in results} == {(DeliveryStatus.FAILED, "429")}
    assert len(server.requests) == 1


def test_a_timeout_is_retried_and_a_repeat_carries_the_same_message_ids(
    server: SegmentServer, client: SegmentHttpClient
) -> None:
    server.time_out_next(1, hold_seconds=0.8, apply=True)
    messages = identifies(4)

    results = deliver_all(client, messages)

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    assert {r.attempts for r in results} == {2}
    # The first request was applied but its answer was lost: everything arrived twice,
    # and the repeats are the same messageIds.
    assert Counter(server.message_ids()) == Counter({m.message_id: 2 for m in messages})


def test_timeouts_every_time_end_failed_after_bounded_retries(server: SegmentServer) -> None:
    server.time_out_next(3, hold_seconds=0.5)
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_elapsed=5)

    with SegmentHttpClient(WRITE_KEY, base_url=server.url, timeout=0.1, retry=retry) as client:
        results = deliver_all(client, identifies(4))

    assert {(r.status, r.code, r.attempts) for r in results} == {(DeliveryStatus.FAILED, "timeout", 3)}
    assert server.messages == []


def test_a_dropped_connection_is_retried(server: SegmentServer, client: SegmentHttpClient) -> None:
    server.drop_next(2)

    results = deliver_all(client, identifies(4))

    assert {(r.status, r.attempts) for r in results} == {(DeliveryStatus.SENT, 3)}
    assert server.statuses() == [None, None, 200]
    assert len(server.messages) == 4


def test_connections_dropped_every_time_end_failed(server: SegmentServer, client: SegmentHttpClient) -> None:
    server.drop_next(10)

    results = deliver_all(client, identifies(4))

    assert {(r.status, r.code) for r in results} == {(DeliveryStatus.FAILED, "connection")}
    assert len(server.requests) == FAST_RETRY.max_attempts


def test_a_wrong_write_key_is_rejected_once_and_the_rest_is_not_sent(
    server: SegmentServer,
) -> None:
    with SegmentHttpClient(
        "wrong-key", base_url=server.url, max_batch_messages=2, concurrency=1, retry=FAST_RETRY
    ) as client:
        results = deliver_all(client, identifies(6))

    assert server.statuses() == [401]
    statuses = Counter((r.status, r.code) for r in results)
    assert statuses == {(DeliveryStatus.REJECTED, "401"): 2, (DeliveryStatus.FAILED, "not_sent"): 4}


def test_concurrency_cap_is_respected_and_used(server: SegmentServer) -> None:
    server.delay = 0.05
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, concurrency=3, max_batch_messages=1) as client:
        deliver_all(client, identifies(12))

    assert server.max_in_flight_seen == 3


def test_results_are_yielded_as_each_request_completes(server: SegmentServer) -> None:
    server.delay = 0.05
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, concurrency=1, max_batch_messages=1) as client:
        chunks = client.deliver(identifies(6))
        first = next(chunks)
        seen_after_first = len(server.requests)
        rest = list(chunks)

    assert len(first) == 1
    assert seen_after_first <= 2
    assert len(rest) == 5


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("us", "https://api.segment.io/v1/batch"),
        ("eu", "https://events.eu1.segmentapis.com/v1/batch"),
        ("EU", "https://events.eu1.segmentapis.com/v1/batch"),
    ],
)
def test_region_selects_the_host(region: str, url: str) -> None:
    with SegmentHttpClient(WRITE_KEY, region=region) as client:
        assert client.url == url


def test_base_url_overrides_the_region_and_tolerates_a_v1_suffix() -> None:
    with SegmentHttpClient(WRITE_KEY, region="eu", base_url="http://rudder.local:8080/v1/") as c:
        assert c.url == "http://rudder.local:8080/v1/batch"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": "apac"},
        {"base_url": "rudder.local"},
        {"max_batch_bytes": 600_000},
        {"max_batch_messages": 3000},
        {"concurrency": 0},
    ],
)
def test_bad_settings_raise_a_ctsync_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(CtsyncError):
        SegmentHttpClient(WRITE_KEY, **kwargs)


def test_the_write_key_never_appears_in_reprs_logs_or_reasons(
    server: SegmentServer, caplog: pytest.LogCaptureFixture
) -> None:
    encoded = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    server.fail_next(1, 500)
    caplog.set_level(logging.DEBUG)
    with SegmentHttpClient(WRITE_KEY, base_url=server.url, retry=FAST_RETRY) as good:
        sent = deliver_all(good, identifies(2))
    with SegmentHttpClient(f"{WRITE_KEY}-wrong", base_url=server.url, retry=FAST_RETRY) as bad:
        refused = deliver_all(bad, identifies(2))
        text = f"{good!r} {bad!r} {sent!r} {refused!r} {caplog.text}"

    assert "retrying" in caplog.text  # the retry was logged ...
    assert {r.status for r in refused} == {DeliveryStatus.REJECTED}
    assert WRITE_KEY not in text  # ... without the key, plain or encoded
    assert encoded not in text


def test_retry_after_is_capped(server: SegmentServer) -> None:
    server.fail_next(1, 429, retry_after=100)
    retry = RetryPolicy(max_attempts=3, retry_after_cap=0.2, max_elapsed=5)

    with SegmentHttpClient(WRITE_KEY, base_url=server.url, retry=retry) as client:
        results = deliver_all(client, identifies(2))

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    first, second = server.requests
    assert 0.15 <= second.started - first.started < 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("soon", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates(header: str, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == seconds
