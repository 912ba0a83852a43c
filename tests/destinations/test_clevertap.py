"""CleverTapUploadClient against a real CleverTap-like Upload API server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from ctsync.destinations import (
    CleverTapUploadClient,
    DeliveryResult,
    DeliveryStatus,
    OutboundMessage,
)
from ctsync.destinations.clevertap import UploadRequest, profile_record, read_upload_answer
from ctsync.destinations.http import Exchange, RetryPolicy
from ctsync.errors import CtsyncError
from tests.servers.clevertap import CleverTapServer

ACCOUNT = "TEST-4R8-Z65-986Z"
PASSCODE = "pc_secret_do_not_log_91b2"
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01, max_elapsed=5)
TIMESTAMP = "2024-05-03T19:42:50.066179717Z"
EPOCH_1990 = 631152000


def identify(
    n: int,
    *,
    user_id: str | None = "",
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
) -> OutboundMessage:
    message_id = f"personas_{n:06d}"
    payload: dict[str, Any] = {
        "type": "identify",
        "traits": {"dormant_shoppers": True} if traits is None else traits,
        "context": {"personas": {"computation_class": "audience", "computation_key": "x"}},
        "messageId": message_id,
        "timestamp": TIMESTAMP,
    }
    if user_id is not None:
        payload["userId"] = user_id or f"u{n}"
    if anonymous_id is not None:
        payload["anonymousId"] = anonymous_id
    return OutboundMessage(message_id, payload)


def identifies(count: int) -> list[OutboundMessage]:
    return [identify(n) for n in range(count)]


def deliver_all(client: CleverTapUploadClient, messages: list[OutboundMessage]) -> dict[str, DeliveryResult]:
    results = [result for chunk in client.deliver(messages) for result in chunk]
    assert Counter(r.message_id for r in results) == Counter(m.message_id for m in messages)
    return {result.message_id: result for result in results}


def statuses(results: dict[str, DeliveryResult]) -> Counter[DeliveryStatus]:
    return Counter(result.status for result in results.values())


def sent_records(server: CleverTapServer) -> list[dict[str, Any]]:
    return [record for request in server.requests for record in request.json()["d"]]


def make_client(server: CleverTapServer, **options: Any) -> CleverTapUploadClient:
    settings: dict[str, Any] = {"timeout": 0.5, "retry": FAST_RETRY, **options}
    return CleverTapUploadClient(ACCOUNT, PASSCODE, base_url=server.url, **settings)


@pytest.fixture
def server() -> Iterator[CleverTapServer]:
    with CleverTapServer(ACCOUNT, PASSCODE) as running:
        yield running


@pytest.fixture
def client(server: CleverTapServer) -> Iterator[CleverTapUploadClient]:
    with make_client(server) as made:
        yield made


# -- request shape and trait mapping ----------------------------------------------------


def test_sends_profile_records_with_the_upload_headers(server: CleverTapServer, client: CleverTapUploadClient) -> None:
    traits = {
        "name": "Jane Doe",
        "birthday": "1990-01-01",
        "avatar": "https://img/x.png",
        "gender": "female",
        "phone": "+14155551234",
        "email": "jane@example.com",
        "Order Completed Last 30 Days": True,
        "firstName": "Jane",
    }

    results = deliver_all(client, [identify(1, user_id="u-123", traits=traits)])

    assert statuses(results) == {DeliveryStatus.SENT: 1}
    (request,) = server.requests
    assert request.path == "/1/upload"
    assert request.headers["x-clevertap-account-id"] == ACCOUNT
    assert request.headers["x-clevertap-passcode"] == PASSCODE
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.json() == {
        "d": [
            {
                "type": "profile",
                "identity": "u-123",
                "ts": 1714765370,
                "profileData": {
                    "Name": "Jane Doe",
                    "DOB": f"$D_{EPOCH_1990}",
                    "Photo": "https://img/x.png",
                    "Gender": "F",
                    "Phone": "+14155551234",
                    "Email": "jane@example.com",
                    "order_completed_last_30_days": True,
                    "first_name": "Jane",
                },
            }
        ]
    }
    assert server.profile(identity="u-123") == request.json()["d"][0]["profileData"]


def test_anonymous_only_users_are_addressed_by_object_id(
    server: CleverTapServer, client: CleverTapUploadClient
) -> None:
    deliver_all(client, [identify(1, user_id=None, anonymous_id="a-1")])

    (record,) = sent_records(server)
    assert record["objectId"] == "a-1"
    assert "identity" not in record
    assert "Identity" not in record["profileData"]
    assert server.profile(object_id="a-1") == {"dormant_shoppers": True}


def test_users_with_both_ids_get_object_id_and_identity_in_profile_data(
    server: CleverTapServer, client: CleverTapUploadClient
) -> None:
    deliver_all(client, [identify(1, user_id="u-1", anonymous_id="a-1")])

    (record,) = sent_records(server)
    assert record["objectId"] == "a-1"
    assert "identity" not in record
    assert record["profileData"]["Identity"] == "u-1"
    assert server.profile(identity="u-1") == {"dormant_shoppers": True, "Identity": "u-1"}


@pytest.mark.parametrize(
    "birthday",
    [
        "1990-01-01",
        "1990-01-01T00:00:00Z",
        "1990-01-01T05:30:00+05:30",
        EPOCH_1990,
        float(EPOCH_1990),
        EPOCH_1990 * 1000,
        str(EPOCH_1990),
        f" {EPOCH_1990 * 1000} ",
        f"{EPOCH_1990}.5",
        f"$D_{EPOCH_1990}",
    ],
)
def test_birthday_becomes_a_clevertap_date(birthday: object) -> None:
    record = profile_record({"userId": "u", "traits": {"birthday": birthday}})

    assert record["profileData"] == {"DOB": f"$D_{EPOCH_1990}"}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"traits": {"x": 1}}, "missing_identity"),
        ({"userId": "u", "traits": {"名前": 1}}, "bad_trait_name"),
        ({"userId": "u", "traits": ["not", "an", "object"]}, "bad_traits"),
        ({"userId": "u", "timestamp": "yesterday", "traits": {}}, "bad_timestamp"),
    ],
)
def test_identifies_that_cannot_become_records_are_rejected_without_being_sent(
    server: CleverTapServer, client: CleverTapUploadClient, payload: dict[str, Any], code: str
) -> None:
    bad = OutboundMessage("bad", {"type": "identify", **payload})

    results = deliver_all(client, [bad, identify(1)])

    assert (results["bad"].status, results["bad"].code) == (DeliveryStatus.REJECTED, code)
    assert results["bad"].reason
    assert results["bad"].attempts == 0
    assert results[identify(1).message_id].status is DeliveryStatus.SENT
    assert len(sent_records(server)) == 1


@pytest.mark.parametrize(
    ("traits", "expected", "reason"),
    [
        ({"gender": "other", "x": 1}, {"x": 1}, "Gender: the gender is neither M nor F"),
        ({"gender": 1, "x": 1}, {"x": 1}, "Gender: the gender is neither M nor F"),
        ({"birthday": "next tuesday", "x": 1}, {"x": 1}, "DOB: the birthday is not a date"),
        ({"birthday": True, "x": 1}, {"x": 1}, "DOB: the birthday is not a date"),
    ],
)
def test_values_clevertap_would_refuse_are_left_out_and_the_rest_is_sent(
    server: CleverTapServer,
    client: CleverTapUploadClient,
    traits: dict[str, Any],
    expected: dict[str, Any],
    reason: str,
) -> None:
    message = OutboundMessage("m", {"type": "identify", "userId": "u-1", "traits": traits})

    results = deliver_all(client, [message])

    assert results["m"].status is DeliveryStatus.SENT
    (note,) = results["m"].left_out
    assert note.startswith(reason)
    assert server.profile(identity="u-1") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("male", "M"),
        (" Female ", "F"),
        ("M", "M"),
        ("f", "F"),
        ("woman", "F"),
        ("MAN", "M"),
    ],
)
def test_gender_is_normalised_to_m_or_f(value: str, expected: str) -> None:
    assert profile_record({"userId": "u", "traits": {"gender": value}})["profileData"] == {"Gender": expected}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-01T10:00:00Z", "$D_1793527200"),
        ("2026-11-01T15:30:00+05:30", "$D_1793527200"),
        ("2026-11-01", "$D_1793491200"),
        ("2026-11-01T10:00:00", "2026-11-01T10:00:00"),  # no offset: not a timestamp trait value
        ("2026-02-30", "2026-02-30"),
        ("4.2.0", "4.2.0"),
        ("1793527200", "1793527200"),  # digits in a custom trait are a string, not a date
        (450.5, 450.5),
    ],
)
def test_date_and_timestamp_traits_become_clevertap_dates(value: object, expected: object) -> None:
    assert profile_record({"userId": "u", "traits": {"last_order_at": value}})["profileData"] == {
        "last_order_at": expected
    }


# -- batching and concurrency --------------------------------------------------------


def test_requests_hold_at_most_1000_records(server: CleverTapServer, client: CleverTapUploadClient) -> None:
    results = deliver_all(client, identifies(2500))

    assert statuses(results) == {DeliveryStatus.SENT: 2500}
    assert sorted(len(request.json()["d"]) for request in server.requests) == [500, 1000, 1000]
    assert len(server.records) == 2500


def test_batch_size_can_be_lower(server: CleverTapServer) -> None:
    with make_client(server, batch_size=100) as client:
        deliver_all(client, identifies(250))

    assert sorted(len(request.json()["d"]) for request in server.requests) == [50, 100, 100]


def test_the_server_refuses_more_than_1000_records() -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, max_records=10) as small:
        with make_client(small, batch_size=11) as client:
            results = deliver_all(client, identifies(11))

    assert {(r.status, r.code) for r in results.values()} == {(DeliveryStatus.REJECTED, "400")}


def test_concurrency_stays_within_the_configured_cap() -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, max_in_flight=3, delay=0.05) as server:
        with make_client(server, batch_size=10) as client:  # default concurrency: 3
            results = deliver_all(client, identifies(120))

    assert statuses(results) == {DeliveryStatus.SENT: 120}
    assert 429 not in server.statuses()
    assert server.max_in_flight_seen == 3


def test_429_from_too_many_requests_in_flight_is_retried_until_sent() -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, max_in_flight=1, delay=0.02) as server:
        retry = RetryPolicy(max_attempts=30, initial_backoff=0.005, max_backoff=0.05)
        with make_client(server, batch_size=10, concurrency=4, retry=retry) as client:
            results = deliver_all(client, identifies(80))

    assert statuses(results) == {DeliveryStatus.SENT: 80}
    assert 429 in server.statuses()
    assert max(r.attempts for r in results.values()) > 1
    assert len(server.records) == 80


@pytest.mark.parametrize("concurrency", [0, 16, 100])
def test_concurrency_outside_1_to_15_is_refused(concurrency: int) -> None:
    with pytest.raises(CtsyncError, match="15"):
        CleverTapUploadClient(ACCOUNT, PASSCODE, region="in1", concurrency=concurrency)


@pytest.mark.parametrize("batch_size", [0, 1001])
def test_batch_size_outside_1_to_1000_is_refused(batch_size: int) -> None:
    with pytest.raises(CtsyncError, match="1000"):
        CleverTapUploadClient(ACCOUNT, PASSCODE, region="in1", batch_size=batch_size)


# -- per-record answers ----------------------------------------------------------------


def test_unprocessed_records_are_rejected_with_code_and_reason() -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, reject_identities={"u3", "u7"}) as server:
        with make_client(server) as client:
            results = deliver_all(client, identifies(10))

    rejected = {mid: r for mid, r in results.items() if r.status is DeliveryStatus.REJECTED}
    assert sorted(rejected) == [identify(3).message_id, identify(7).message_id]
    for result in rejected.values():
        assert result.code == "516"
        assert "Rejected by the test server" in (result.reason or "")
    assert statuses(results)[DeliveryStatus.SENT] == 8
    assert server.profile(identity="u3") is None
    assert server.profile(identity="u4") is not None


def test_invalid_phone_is_rejected_by_the_server_with_516(
    server: CleverTapServer, client: CleverTapUploadClient
) -> None:
    bad = identify(2, traits={"phone": "555-1234"})

    results = deliver_all(client, [identify(1), bad])

    assert results[bad.message_id].status is DeliveryStatus.REJECTED
    assert results[bad.message_id].code == "516"
    assert "Phone number is not valid" in (results[bad.message_id].reason or "")
    assert results[identify(1).message_id].status is DeliveryStatus.SENT


@pytest.mark.parametrize("record_format", ["string", "object"])
def test_unprocessed_records_are_matched_by_record_when_no_number_is_given(
    record_format: str,
) -> None:
    with CleverTapServer(
        ACCOUNT,
        PASSCODE,
        reject_identities={"u5"},
        include_record_number=False,
        record_format=record_format,  # type: ignore[arg-type]
    ) as server:
        with make_client(server) as client:
            results = deliver_all(client, identifies(8))

    assert results[identify(5).message_id].status is DeliveryStatus.REJECTED
    assert statuses(results) == {DeliveryStatus.SENT: 7, DeliveryStatus.REJECTED: 1}


def test_unprocessed_entries_that_match_no_record_confirm_nothing() -> None:
    with CleverTapServer(
        ACCOUNT,
        PASSCODE,
        reject_identities={"u5"},
        include_record_number=False,
        record_format="omit",
    ) as server:
        with make_client(server) as client:
            results = deliver_all(client, identifies(8))

    assert statuses(results) == {DeliveryStatus.FAILED: 8}
    assert "could not be matched" in (results[identify(0).message_id].reason or "")


@pytest.mark.parametrize("answer_status", ["partial", "fail"])
def test_a_status_other_than_success_confirms_nothing_but_keeps_rejections(
    answer_status: str,
) -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, reject_identities={"u2"}, answer_status=answer_status) as server:
        with make_client(server) as client:
            results = deliver_all(client, identifies(5))

    assert results[identify(2).message_id].status is DeliveryStatus.REJECTED
    assert statuses(results) == {DeliveryStatus.FAILED: 4, DeliveryStatus.REJECTED: 1}
    assert len(server.requests) == 1


def test_a_processed_count_short_of_the_records_confirms_nothing() -> None:
    with CleverTapServer(ACCOUNT, PASSCODE, processed_override=3) as server:
        with make_client(server) as client:
            results = deliver_all(client, identifies(5))

    assert statuses(results) == {DeliveryStatus.FAILED: 5}
    assert "processed 3 of 5" in (results[identify(0).message_id].reason or "")


# -- HTTP failures ---------------------------------------------------------------------


def test_a_wrong_passcode_is_rejected_without_retry_and_stops_the_delivery(
    server: CleverTapServer,
) -> None:
    with CleverTapUploadClient(
        ACCOUNT, "wrong", base_url=server.url, batch_size=2, concurrency=1, retry=FAST_RETRY
    ) as client:
        results = deliver_all(client, identifies(6))

    assert server.statuses() == [401]
    refused = [r for r in results.values() if r.status is DeliveryStatus.REJECTED]
    assert {(r.code, r.reason) for r in refused} == {("401", "HTTP 401: Account ID is not valid")}
    assert len(refused) == 2
    assert statuses(results)[DeliveryStatus.FAILED] == 4
    assert server.records == []


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409])
def test_client_errors_reject_the_whole_request_without_retry(
    server: CleverTapServer, client: CleverTapUploadClient, status: int
) -> None:
    server.fail_next(1, status)

    results = deliver_all(client, identifies(3))

    assert {(r.status, r.code) for r in results.values()} == {(DeliveryStatus.REJECTED, str(status))}
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_with_backoff(
    server: CleverTapServer, client: CleverTapUploadClient, status: int
) -> None:
    server.fail_next(2, status)

    results = deliver_all(client, identifies(3))

    assert {(r.status, r.attempts) for r in results.values()} == {(DeliveryStatus.SENT, 3)}
    assert server.statuses() == [status, status, 200]


def test_persistent_503_ends_failed_after_bounded_attempts(
    server: CleverTapServer, client: CleverTapUploadClient
) -> None:
    server.fail_next(100, 503)

    results = deliver_all(client, identifies(3))

    assert {(r.status, r.code) for r in results.values()} == {(DeliveryStatus.FAILED, "503")}
    assert len(server.requests) == FAST_RETRY.max_attempts


def test_repeated_failures_stop_sending_the_remaining_requests(server: CleverTapServer) -> None:
    server.fail_next(100, 500)
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)

    with make_client(server, batch_size=1, concurrency=1, retry=retry) as client:
        results = deliver_all(client, identifies(10))

    assert len(server.requests) == 3 * 2  # three requests gave up, the rest were not sent
    codes = Counter(r.code for r in results.values())
    assert codes == {"500": 3, "not_sent": 7}
    assert statuses(results) == {DeliveryStatus.FAILED: 10}


def test_a_timeout_whose_request_was_applied_is_retried_and_sent(
    server: CleverTapServer, client: CleverTapUploadClient
) -> None:
    server.time_out_next(1, hold_seconds=0.8, apply=True)

    results = deliver_all(client, identifies(3))

    assert {(r.status, r.attempts) for r in results.values()} == {(DeliveryStatus.SENT, 2)}
    assert len(server.records) == 6  # applied twice: an upsert, so the profiles are the same
    assert server.profile(identity="u1") == {"dormant_shoppers": True}


def test_timeouts_end_failed_and_unapplied(server: CleverTapServer) -> None:
    server.time_out_next(2, hold_seconds=0.4)
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)

    with make_client(server, timeout=0.1, retry=retry) as client:
        results = deliver_all(client, identifies(3))

    assert {(r.status, r.code) for r in results.values()} == {(DeliveryStatus.FAILED, "timeout")}
    assert server.records == []


def test_dropped_connections_are_retried_then_fail(server: CleverTapServer, client: CleverTapUploadClient) -> None:
    server.drop_next(FAST_RETRY.max_attempts, apply=True)

    results = deliver_all(client, identifies(3))

    assert {(r.status, r.code) for r in results.values()} == {(DeliveryStatus.FAILED, "connection")}
    assert server.statuses() == [None] * FAST_RETRY.max_attempts


def test_a_non_json_200_confirms_nothing(server: CleverTapServer, client: CleverTapUploadClient) -> None:
    server.fail_next(1, 200, body="<html>maintenance</html>")

    results = deliver_all(client, identifies(2))

    assert statuses(results) == {DeliveryStatus.FAILED: 2}


# -- regions and secrets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("eu1", "https://api.clevertap.com/1/upload"),
        ("in1", "https://in1.api.clevertap.com/1/upload"),
        ("us1", "https://us1.api.clevertap.com/1/upload"),
        ("sg1", "https://sg1.api.clevertap.com/1/upload"),
        ("aps3", "https://aps3.api.clevertap.com/1/upload"),
        ("mec1", "https://mec1.api.clevertap.com/1/upload"),
        ("sk1", "https://sk1.api.clevertap.com/1/upload"),
        ("IN1", "https://in1.api.clevertap.com/1/upload"),
    ],
)
def test_region_selects_the_host(region: str, url: str) -> None:
    with CleverTapUploadClient(ACCOUNT, PASSCODE, region=region) as client:
        assert client.url == url


def test_base_url_overrides_the_region() -> None:
    with CleverTapUploadClient(ACCOUNT, PASSCODE, region="in1", base_url="http://127.0.0.1:9/") as client:
        assert client.url == "http://127.0.0.1:9/1/upload"


@pytest.mark.parametrize("kwargs", [{"region": "eu"}, {}, {"base_url": "ftp://x"}])
def test_a_bad_or_missing_region_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(CtsyncError):
        CleverTapUploadClient(ACCOUNT, PASSCODE, **kwargs)


def test_the_passcode_never_appears_in_reprs_logs_or_reasons(
    server: CleverTapServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_next(1, 503)
    with make_client(server) as good:
        sent = deliver_all(good, identifies(2))
    with CleverTapUploadClient(ACCOUNT, f"{PASSCODE}-wrong", base_url=server.url, retry=FAST_RETRY) as bad:
        refused = deliver_all(bad, identifies(2))
        text = f"{good!r} {bad!r} {sent!r} {refused!r} {caplog.text}"

    assert "retrying" in caplog.text
    assert statuses(refused) == {DeliveryStatus.REJECTED: 2}
    assert PASSCODE not in text


def test_records_are_valid_json_even_with_decimals(server: CleverTapServer, client: CleverTapUploadClient) -> None:
    from decimal import Decimal

    results = deliver_all(client, [identify(1, traits={"ltv": Decimal("450.25")})])

    assert statuses(results) == {DeliveryStatus.SENT: 1}
    assert orjson.loads(server.requests[0].body)["d"][0]["profileData"] == {"ltv": 450.25}


# -- reading answers the server above does not produce -----------------------------------


def _request(*records: dict[str, Any]) -> UploadRequest:
    ids = [f"m{n}" for n in range(len(records))]
    return UploadRequest(ids, list(records), b"")


def _answer(body: dict[str, Any]) -> Exchange:
    return Exchange(status=200, body=orjson.dumps(body), attempts=1, gave_up=False)


def test_two_entries_naming_the_same_record_confirm_nothing_else() -> None:
    request = _request(profile_record({"userId": "a"}), profile_record({"userId": "b"}))
    entry = {"status": "fail", "code": 516, "error": "Bad.Skipped record number : 1"}
    answer = {"status": "success", "processed": 1, "unprocessed": [entry, entry]}

    results = read_upload_answer(request, _answer(answer))

    assert [(r.status, r.code) for r in results] == [
        (DeliveryStatus.REJECTED, "516"),
        (DeliveryStatus.FAILED, "200"),
    ]


def test_a_reformatted_record_string_is_matched_by_its_identity() -> None:
    request = _request(
        {"type": "profile", "identity": "10", "profileData": {"Phone": "1"}},
        {"type": "profile", "identity": "11", "profileData": {}},
    )
    entry = {
        "status": "fail",
        "code": 516,
        "error": "Profile data is incorrect. Phone number is not valid.",
        "record": '{ "identity" : 10 , "type" : "profile", "profileData" : { "Phone" : 1 } }',
    }
    answer = {"status": "success", "processed": 1, "unprocessed": [entry]}

    results = read_upload_answer(request, _answer(answer))

    assert [r.status for r in results] == [DeliveryStatus.REJECTED, DeliveryStatus.SENT]
    assert results[0].reason == entry["error"]
