"""build_destination: settings entries, environment-only configuration, and their errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctsync.destinations import (
    CleverTapUploadClient,
    DeliveryStatus,
    JsonlFileDestination,
    OutboundMessage,
    SegmentHttpClient,
    build_destination,
)
from ctsync.destinations.base import Destination
from ctsync.errors import CtsyncError
from tests.servers.clevertap import CleverTapServer
from tests.servers.segment import SegmentServer

PASSCODE = "pc_very_secret_4411"
WRITE_KEY = "wk_very_secret_9932"


@pytest.fixture
def closing() -> Iterator[list[Destination]]:
    built: list[Destination] = []
    yield built
    for destination in built:
        destination.close()


def build(
    closing: list[Destination],
    name: str,
    settings: dict[str, Any] | None,
    environ: dict[str, str] | None = None,
    **kwargs: Any,
) -> Destination:
    destination = build_destination(name, settings, environ or {}, **kwargs)
    closing.append(destination)
    return destination


def send_one(destination: Destination) -> DeliveryStatus:
    message = OutboundMessage("m1", {"type": "identify", "userId": "u1", "traits": {"vip": True}})
    (chunk,) = destination.deliver([message])
    return chunk[0].status


# -- settings entries ------------------------------------------------------------------


def test_clevertap_from_settings_with_the_passcode_from_the_environment(
    closing: list[Destination],
) -> None:
    with CleverTapServer("ACC", PASSCODE) as server:
        settings = {
            "type": "clevertap",
            "account_id": "ACC",
            "passcode_env": "MY_CT_PASSCODE",
            "base_url": server.url,
            "concurrency": 5,
        }
        destination = build(closing, "ct_prod", settings, {"MY_CT_PASSCODE": PASSCODE})

        assert isinstance(destination, CleverTapUploadClient)
        assert (destination.name, destination.kind, destination.concurrency) == (
            "ct_prod",
            "clevertap",
            5,
        )
        assert send_one(destination) is DeliveryStatus.SENT
        assert server.profile(identity="u1") == {"vip": True}


def test_clevertap_region_selects_the_host(closing: list[Destination]) -> None:
    settings = {"type": "clevertap", "account_id": "A", "passcode_env": "P", "region": "in1"}

    destination = build(closing, "ct", settings, {"P": PASSCODE})

    assert isinstance(destination, CleverTapUploadClient)
    assert destination.url == "https://in1.api.clevertap.com/1/upload"
    assert destination.concurrency == 3


def test_segment_from_settings_with_a_secret_block(closing: list[Destination]) -> None:
    requested: list[str] = []

    def resolver(block: str) -> str:
        requested.append(block)
        return WRITE_KEY

    with SegmentServer(WRITE_KEY) as server:
        settings = {
            "type": "segment",
            "write_key_secret": "segment-write-key",
            "base_url": server.url,
        }
        destination = build(closing, "seg", settings, secret_resolver=resolver)

        assert isinstance(destination, SegmentHttpClient)
        assert send_one(destination) is DeliveryStatus.SENT
    assert requested == ["segment-write-key"]


def test_segment_region_eu(closing: list[Destination]) -> None:
    settings = {"type": "segment", "write_key_env": "SEGMENT_WRITE_KEY", "region": "eu"}

    destination = build(closing, "seg", settings, {"SEGMENT_WRITE_KEY": WRITE_KEY})

    assert isinstance(destination, SegmentHttpClient)
    assert destination.url == "https://events.eu1.segmentapis.com/v1/batch"


def test_jsonl_from_settings(closing: list[Destination], tmp_path: Path) -> None:
    destination = build(closing, "audit", {"type": "jsonl", "path": str(tmp_path / "a.jsonl")})

    assert isinstance(destination, JsonlFileDestination)
    assert send_one(destination) is DeliveryStatus.SENT
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 1


def test_the_environment_wins_over_the_settings_file_for_a_built_in_name(
    closing: list[Destination], tmp_path: Path
) -> None:
    settings = {"type": "jsonl", "path": str(tmp_path / "file.jsonl")}
    redirected = build(closing, "jsonl", settings, {"CTSYNC_JSONL_PATH": str(tmp_path / "env.jsonl")})
    other_name = build(closing, "audit", settings, {"CTSYNC_JSONL_PATH": str(tmp_path / "env.jsonl")})

    assert send_one(redirected) is DeliveryStatus.SENT and send_one(other_name) is DeliveryStatus.SENT
    assert (tmp_path / "env.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "file.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"type": "clevertap", "account_id": "A", "passcode": PASSCODE, "region": "in1"},
            "passcode_env",
        ),
        ({"type": "segment", "write_key": WRITE_KEY}, "write_key_env"),
        ({"type": "segment", "writeKey": WRITE_KEY}, "write_key_secret"),
    ],
)
def test_a_secret_written_in_the_settings_file_is_refused(
    closing: list[Destination], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(CtsyncError, match=message) as raised:
        build(closing, "d", settings)

    assert PASSCODE not in str(raised.value)
    assert WRITE_KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        (
            {"type": "clevertap", "account_id": "A", "passcode_env": "CT_PC", "region": "in1"},
            {},
            "CT_PC",
        ),
        (
            {"type": "clevertap", "account_id": "A", "passcode_env": "P", "region": "xx9"},
            {"P": "p"},
            "region",
        ),
        ({"type": "clevertap", "account_id": "A", "passcode_env": "P"}, {"P": "p"}, "region"),
        ({"type": "clevertap", "account_id": "A", "region": "in1"}, {}, "passcode_env"),
        (
            {
                "type": "clevertap",
                "account_id": "A",
                "passcode_env": "P",
                "passcode_secret": "b",
                "region": "in1",
            },
            {"P": "p"},
            "exactly one",
        ),
        (
            {
                "type": "clevertap",
                "account_id": "A",
                "passcode_env": "P",
                "region": "in1",
                "concurrency": 16,
            },
            {"P": "p"},
            "concurrency",
        ),
        ({"type": "segment", "write_key_env": "P", "region": "apac"}, {"P": "k"}, "region"),
        (
            {"type": "segment", "write_key_env": "P", "base_url": "localhost:1"},
            {"P": "k"},
            "base_url",
        ),
        ({"type": "segment", "write_key_env": "P", "batch_size": 3}, {"P": "k"}, "batch_size"),
        ({"type": "segment", "write_key_secret": "blk"}, {}, "Prefect"),
        ({"type": "kafka"}, {}, "clevertap, segment, jsonl"),
        ({"path": "x.jsonl"}, {}, "type"),
        ({"type": "jsonl"}, {}, "path"),
    ],
)
def test_bad_settings_say_what_to_fix(
    closing: list[Destination], settings: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(CtsyncError, match=message) as raised:
        build(closing, "dest", settings, environ)

    assert "dest" in str(raised.value)


def test_a_failing_secret_resolver_becomes_a_clear_error(closing: list[Destination]) -> None:
    def resolver(block: str) -> str:
        raise KeyError(block)

    with pytest.raises(CtsyncError, match="could not read the secret block 'missing'"):
        build(
            closing,
            "seg",
            {"type": "segment", "write_key_secret": "missing"},
            secret_resolver=resolver,
        )


# -- environment only ------------------------------------------------------------------


def test_clevertap_from_the_environment_alone(closing: list[Destination]) -> None:
    environ = {
        "CLEVERTAP_ACCOUNT_ID": "ACC",
        "CLEVERTAP_PASSCODE": PASSCODE,
        "CLEVERTAP_REGION": "sg1",
    }

    destination = build(closing, "clevertap", None, environ)

    assert isinstance(destination, CleverTapUploadClient)
    assert destination.url == "https://sg1.api.clevertap.com/1/upload"
    assert destination.account_id == "ACC"


def test_clevertap_base_url_from_the_environment_is_used(closing: list[Destination]) -> None:
    with CleverTapServer("ACC", PASSCODE) as server:
        environ = {
            "CLEVERTAP_ACCOUNT_ID": "ACC",
            "CLEVERTAP_PASSCODE": PASSCODE,
            "CLEVERTAP_BASE_URL": server.url,
        }
        destination = build(closing, "clevertap", None, environ)

        assert send_one(destination) is DeliveryStatus.SENT
        assert len(server.requests) == 1


def test_segment_from_the_environment_alone_defaults_to_us(closing: list[Destination]) -> None:
    destination = build(closing, "segment", None, {"SEGMENT_WRITE_KEY": WRITE_KEY})

    assert isinstance(destination, SegmentHttpClient)
    assert destination.url == "https://api.segment.io/v1/batch"


def test_segment_base_url_from_the_environment_is_used(closing: list[Destination]) -> None:
    with SegmentServer(WRITE_KEY) as server:
        environ = {
            "SEGMENT_WRITE_KEY": WRITE_KEY,
            "SEGMENT_REGION": "eu",
            "SEGMENT_BASE_URL": server.url,
        }
        destination = build(closing, "segment", None, environ)

        assert send_one(destination) is DeliveryStatus.SENT
        assert server.message_ids() == ["m1"]


def test_jsonl_from_the_environment_alone(closing: list[Destination], tmp_path: Path) -> None:
    destination = build(closing, "jsonl", None, {"CTSYNC_JSONL_PATH": str(tmp_path / "x.jsonl")})

    assert isinstance(destination, JsonlFileDestination)
    assert destination.path == tmp_path / "x.jsonl"


@pytest.mark.parametrize(
    ("name", "environ", "variable"),
    [
        (
            "clevertap",
            {"CLEVERTAP_PASSCODE": "p", "CLEVERTAP_REGION": "in1"},
            "CLEVERTAP_ACCOUNT_ID",
        ),
        (
            "clevertap",
            {"CLEVERTAP_ACCOUNT_ID": "A", "CLEVERTAP_REGION": "in1"},
            "CLEVERTAP_PASSCODE",
        ),
        ("clevertap", {"CLEVERTAP_ACCOUNT_ID": "A", "CLEVERTAP_PASSCODE": "p"}, "CLEVERTAP_REGION"),
        (
            "clevertap",
            {"CLEVERTAP_ACCOUNT_ID": "A", "CLEVERTAP_PASSCODE": "p", "CLEVERTAP_REGION": "mars"},
            "CLEVERTAP_REGION",
        ),
        (
            "clevertap",
            {"CLEVERTAP_ACCOUNT_ID": "A", "CLEVERTAP_PASSCODE": "p", "CLEVERTAP_BASE_URL": "nope"},
            "CLEVERTAP_BASE_URL",
        ),
        ("segment", {}, "SEGMENT_WRITE_KEY"),
        ("segment", {"SEGMENT_WRITE_KEY": " "}, "SEGMENT_WRITE_KEY"),
        ("segment", {"SEGMENT_WRITE_KEY": "k", "SEGMENT_REGION": "asia"}, "SEGMENT_REGION"),
        ("jsonl", {}, "CTSYNC_JSONL_PATH"),
    ],
)
def test_environment_errors_name_the_variable_to_set(
    closing: list[Destination], name: str, environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(CtsyncError, match=variable):
        build(closing, name, None, environ)


def test_an_unknown_name_without_settings_is_refused(closing: list[Destination]) -> None:
    with pytest.raises(CtsyncError, match="no destination named 'braze'"):
        build(closing, "braze", None, {})


# -- secrets stay secret ---------------------------------------------------------------


def test_secrets_do_not_leak_into_reprs_logs_or_errors(
    closing: list[Destination], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clevertap = build(
        closing,
        "clevertap",
        None,
        {"CLEVERTAP_ACCOUNT_ID": "A", "CLEVERTAP_PASSCODE": PASSCODE, "CLEVERTAP_REGION": "in1"},
    )
    segment = build(closing, "segment", None, {"SEGMENT_WRITE_KEY": WRITE_KEY})
    with pytest.raises(CtsyncError) as raised:
        build(
            closing,
            "ct",
            {
                "type": "clevertap",
                "account_id": "A",
                "passcode_env": "P",
                "extra": PASSCODE,
                "region": "in1",
            },
            {"P": PASSCODE},
        )

    text = f"{clevertap!r} {segment!r} {vars(clevertap)} {vars(segment)} {raised.value} {caplog.text}"
    assert "extra" in str(raised.value)
    assert PASSCODE not in text
    assert WRITE_KEY not in text
