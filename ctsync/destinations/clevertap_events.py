"""CleverTap Upload API for events: each message carries its records (an event, and its device token).

Same endpoint, headers, 1000-record requests and answer reading as profile uploads
(:mod:`ctsync.destinations.clevertap`), with one difference: CleverTap appends every event it
is given, so a request that may have arrived is never repeated here. Timeouts and dropped
connections are not retried (only refusals such as 429 and 5xx are); they come back FAILED with
code ``timeout``/``connection``/``transport``, which the event sync holds as in doubt.

A message is SENT when its event record was processed; a refused token record does not undo the
event, it is named in ``left_out``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ctsync.destinations.base import DeliveryResult, DeliveryStatus, OutboundMessage
from ctsync.destinations.clevertap import (
    MAX_RECORDS_PER_REQUEST,
    CleverTapUploadClient,
    UploadRequest,
    read_upload_answer,
)
from ctsync.destinations.http import Exchange, HttpSender, Settled, dump_json, unconfirmed

UNANSWERED_CODES = frozenset({"timeout", "connection", "transport"})
"""Result codes of a request that may have arrived although no answer came back."""


class CleverTapEventClient:
    """Uploads event records to one CleverTap account, never repeating a request that may have arrived."""

    kind = "clevertap"

    def __init__(self, upload: CleverTapUploadClient, *, batch_size: int | None = None) -> None:
        self.name = upload.name
        self.url = upload.url
        self.batch_size = min(batch_size or upload.batch_size, MAX_RECORDS_PER_REQUEST)
        self._sender: HttpSender[UploadRequest] = upload.upload_sender(retry_unanswered=False)

    @property
    def concurrency(self) -> int:
        return self._sender.concurrency

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        """Send each message's ``payload["records"]``; one result per message as each request completes."""
        return self._sender.run(self._requests(messages), _interpret)

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> CleverTapEventClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _requests(self, messages: Sequence[OutboundMessage]) -> Iterator[UploadRequest | Settled]:
        owners: list[str] = []
        records: list[dict[str, Any]] = []
        parts: list[bytes] = []
        refused: list[DeliveryResult] = []
        for message in messages:
            mine = message.payload.get("records")
            if not isinstance(mine, list) or not mine or not all(isinstance(r, dict) for r in mine):
                refused.append(_refused(message.message_id, "invalid_payload", "the stored records are not a list"))
                continue
            if len(records) + len(mine) > self.batch_size:
                yield UploadRequest(owners, records, b'{"d":[' + b",".join(parts) + b"]}")
                owners, records, parts = [], [], []
            for record in mine:
                owners.append(message.message_id)
                records.append(record)
                parts.append(dump_json(record))
        if refused:
            yield Settled(refused)
        if records:
            yield UploadRequest(owners, records, b'{"d":[' + b",".join(parts) + b"]}")


def _interpret(request: UploadRequest, exchange: Exchange) -> list[DeliveryResult]:
    """One result per message: its event record's, with a refused token named in ``left_out``."""
    if not exchange.ok:
        per_record = unconfirmed(request.message_ids, exchange, reason_keys=("error", "message"))
    else:
        per_record = read_upload_answer(request, exchange)
    folded: dict[str, DeliveryResult] = {}
    for record, result in zip(request.records, per_record, strict=True):
        owner = result.message_id
        if record.get("type") != "token":
            folded[owner] = result if owner not in folded else _with_notes(result, folded[owner].left_out)
        elif result.status is not DeliveryStatus.SENT:
            note = f"token: {result.reason or 'not accepted'}" if result.status is DeliveryStatus.REJECTED else None
            earlier = folded.get(owner)
            if earlier is not None and note is not None:
                folded[owner] = _with_notes(earlier, (*earlier.left_out, note))
            elif note is not None:
                folded[owner] = DeliveryResult(owner, DeliveryStatus.SENT, left_out=(note,))
    return list(folded.values())


def _with_notes(result: DeliveryResult, notes: tuple[str, ...]) -> DeliveryResult:
    return DeliveryResult(result.message_id, result.status, result.code, result.reason, result.attempts, notes)


def _refused(message_id: str, code: str, reason: str) -> DeliveryResult:
    return DeliveryResult(message_id, DeliveryStatus.REJECTED, code, reason, attempts=0)
