"""JsonlFileDestination writes one payload per line, fsynced per chunk."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from ctsync.destinations import (
    DeliveryResult,
    DeliveryStatus,
    JsonlFileDestination,
    OutboundMessage,
)


def identify(n: int) -> OutboundMessage:
    payload = {"type": "identify", "userId": f"u{n}", "traits": {"vip": True}, "messageId": f"m{n}"}
    return OutboundMessage(f"m{n}", payload)


def deliver_all(destination: JsonlFileDestination, count: int, start: int = 0) -> list[list[DeliveryResult]]:
    return list(destination.deliver([identify(n) for n in range(start, start + count)]))


def read_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_appends_one_line_per_payload_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "out" / "audit" / "identify.jsonl"

    with JsonlFileDestination(path) as destination:
        first = deliver_all(destination, 3)
    with JsonlFileDestination(path) as destination:
        deliver_all(destination, 2, start=3)

    assert [line["messageId"] for line in read_lines(path)] == ["m0", "m1", "m2", "m3", "m4"]
    assert read_lines(path)[0] == identify(0).payload
    assert [r.status for chunk in first for r in chunk] == [DeliveryStatus.SENT] * 3


def test_each_chunk_is_fsynced_before_its_results_are_yielded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "identify.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(len(path.read_bytes().splitlines()))

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with JsonlFileDestination(path, chunk_size=4) as destination:
        chunks = destination.deliver([identify(n) for n in range(10)])
        sizes = []
        for chunk in chunks:
            sizes.append(len(chunk))
            assert synced[-1] == sum(sizes)  # on disk before the engine hears about it

    assert sizes == [4, 4, 2]
    assert synced == [4, 8, 10]


def test_a_payload_that_is_not_json_is_rejected_and_not_written(tmp_path: Path) -> None:
    path = tmp_path / "identify.jsonl"
    bad = OutboundMessage("bad", {"type": "identify", "userId": "u", "traits": {"x": object()}})

    with JsonlFileDestination(path) as destination:
        results = [r for chunk in destination.deliver([identify(1), bad]) for r in chunk]

    assert [(r.message_id, r.status, r.code) for r in results] == [
        ("m1", DeliveryStatus.SENT, None),
        ("bad", DeliveryStatus.REJECTED, "not_json"),
    ]
    assert [line["messageId"] for line in read_lines(path)] == ["m1"]


def test_an_unwritable_path_fails_every_message(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")

    with JsonlFileDestination(blocker / "identify.jsonl", chunk_size=2) as destination:
        results = [r for chunk in destination.deliver([identify(n) for n in range(5)]) for r in chunk]

    assert [r.status for r in results] == [DeliveryStatus.FAILED] * 5
    assert "not-a-folder" in (results[0].reason or "")
