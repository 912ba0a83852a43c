"""Segment-compatible HTTP Tracking API destination (Segment, RudderStack, ...): ``/v1/batch``.

Each payload is serialised once with orjson; the bytes are measured against the 32 KB
message limit and joined into batches of at most 475,000 bytes (the official SDK's margin
under the documented 500 KB) and 2500 messages. A 2xx confirms the whole batch.

Each attempt is sent as the official ``segment-analytics-python`` client sends it:
``{"batch": [...], "sentAt": "<now, ISO-8601 UTC>", "writeKey": "..."}`` with Basic auth, and
``X-Retry-Count: <attempts before this one>`` on retries. ``sentAt`` is stamped per attempt, so
Segment's clock-skew correction (``timestamp = receivedAt - (sentAt - originalTimestamp)``)
measures this attempt, not the first.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from ctsync import __version__
from ctsync.destinations.base import DeliveryResult, DeliveryStatus, OutboundMessage
from ctsync.destinations.http import (
    DEFAULT_RETRY_STATUSES,
    Exchange,
    HttpSender,
    RetryPolicy,
    Settled,
    check_base_url,
    dump_json,
    results,
    unconfirmed,
)
from ctsync.errors import CtsyncError

REGION_BASE_URLS = {
    "us": "https://api.segment.io",
    "eu": "https://events.eu1.segmentapis.com",
}
MAX_BATCH_BYTES = 500_000
"""Documented limit of one /v1/batch request body (500 KB)."""
TARGET_BATCH_BYTES = 475_000
"""Batch size aimed at, as in the official SDK, leaving room under the limit."""
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_BYTES = 32 * 1024
RETRY_STATUSES = DEFAULT_RETRY_STATUSES | {410, 460}
"""What the official SDK retries: 408, 410, 429, 460 and 5xx except 501 and 505."""

_BATCH_OPEN = b'{"batch":['
_BATCH_CLOSE = b"]}"
_SENT_AT_SIZE = len(b',"sentAt":"2024-05-03T19:42:50.066179+00:00"')
USER_AGENT = f"ctsync/{__version__}"


def batch_stamper(
    write_key: str, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[bytes, int], tuple[bytes, Mapping[str, str]]]:
    """The per-attempt hook: ``sentAt`` and ``writeKey`` appended to the batch object, and
    ``X-Retry-Count`` on retries, as the official Python client does."""
    key_part = b',"writeKey":' + dump_json(write_key)

    def stamp(body: bytes, retries: int) -> tuple[bytes, Mapping[str, str]]:
        sent_at = b',"sentAt":' + dump_json(clock().astimezone(UTC).isoformat())
        headers = {"X-Retry-Count": str(retries)} if retries > 0 else {}
        return body[:-1] + sent_at + key_part + b"}", headers

    return stamp


@dataclass(frozen=True, slots=True)
class SegmentBatch:
    message_ids: list[str]
    body: bytes


class SegmentHttpClient:
    """Sends Identify calls to a Segment-compatible ``/v1/batch`` endpoint."""

    kind = "segment"

    def __init__(
        self,
        write_key: SecretStr | str,
        *,
        region: str = "us",
        base_url: str | None = None,
        name: str = "segment",
        concurrency: int = 4,
        max_batch_bytes: int = TARGET_BATCH_BYTES,
        max_batch_messages: int = MAX_BATCH_MESSAGES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        secret = write_key if isinstance(write_key, SecretStr) else SecretStr(write_key)
        if not secret.get_secret_value():
            raise CtsyncError("the Segment write key is empty")
        if not 1 <= max_batch_messages <= MAX_BATCH_MESSAGES:
            raise CtsyncError(f"max_batch_messages must be between 1 and {MAX_BATCH_MESSAGES}")
        if not 1 <= max_message_bytes <= MAX_MESSAGE_BYTES:
            raise CtsyncError(f"max_message_bytes must be between 1 and {MAX_MESSAGE_BYTES}")
        if max_batch_bytes > MAX_BATCH_BYTES:
            raise CtsyncError(f"max_batch_bytes must be at most {MAX_BATCH_BYTES}")
        # Room for what each attempt appends to the batch object (sentAt, writeKey).
        self._stamp_size = _SENT_AT_SIZE + len(b',"writeKey":' + dump_json(secret.get_secret_value()))
        if max_message_bytes + len(_BATCH_OPEN + _BATCH_CLOSE) + self._stamp_size > max_batch_bytes:
            raise CtsyncError("max_batch_bytes must leave room for a message of max_message_bytes")
        self.name = name
        self.url = f"{_base_url(region, base_url)}/v1/batch"
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_messages = max_batch_messages
        self.max_message_bytes = max_message_bytes
        token = base64.b64encode(f"{secret.get_secret_value()}:".encode()).decode("ascii")
        self._sender: HttpSender[SegmentBatch] = HttpSender(
            url=self.url,
            headers={
                "Authorization": f"Basic {token}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            },
            concurrency=concurrency,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            retry_statuses=RETRY_STATUSES,
            label=name,
            attempt_hook=batch_stamper(secret.get_secret_value()),
        )

    @property
    def concurrency(self) -> int:
        return self._sender.concurrency

    def __repr__(self) -> str:
        return f"SegmentHttpClient(name={self.name!r}, url={self.url!r}, concurrency={self.concurrency})"

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        return self._sender.run(self._batches(messages), _interpret)

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> SegmentHttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _batches(self, messages: Sequence[OutboundMessage]) -> Iterator[SegmentBatch | Settled]:
        ids: list[str] = []
        parts: list[bytes] = []
        size = len(_BATCH_OPEN) + len(_BATCH_CLOSE) + self._stamp_size - 1  # the first message needs no comma
        empty_size = size
        refused: list[DeliveryResult] = []
        for message in messages:
            part = self._encode(message, refused)
            if part is None:
                continue
            if ids and (len(ids) == self.max_batch_messages or size + len(part) + 1 > self.max_batch_bytes):
                if refused:
                    yield Settled(refused)
                    refused = []
                yield SegmentBatch(ids, _BATCH_OPEN + b",".join(parts) + _BATCH_CLOSE)
                ids, parts, size = [], [], empty_size
            ids.append(message.message_id)
            parts.append(part)
            size += len(part) + 1
        if refused:
            yield Settled(refused)
        if ids:
            yield SegmentBatch(ids, _BATCH_OPEN + b",".join(parts) + _BATCH_CLOSE)

    def _encode(self, message: OutboundMessage, refused: list[DeliveryResult]) -> bytes | None:
        """The message's JSON bytes, or None after adding its rejection to ``refused``."""
        payload = message.payload
        problem = _check_payload(payload)
        if problem is not None:
            refused.append(_refused(message.message_id, *problem))
            return None
        if "messageId" not in payload:
            payload = {**payload, "messageId": message.message_id}
        try:
            part = dump_json(payload)
        except TypeError as exc:
            refused.append(_refused(message.message_id, "not_json", str(exc)))
            return None
        if len(part) > self.max_message_bytes:
            refused.append(
                _refused(
                    message.message_id,
                    "too_large",
                    f"the message is {len(part)} bytes as JSON; at most "
                    f"{self.max_message_bytes} bytes (32 KB) are accepted per message",
                )
            )
            return None
        return part


def _base_url(region: str, base_url: str | None) -> str:
    if base_url is not None:
        return check_base_url(base_url).removesuffix("/v1")
    code = region.strip().lower()
    if code not in REGION_BASE_URLS:
        raise CtsyncError(f"unknown Segment region {region!r}: use us or eu (the region of your workspace)")
    return REGION_BASE_URLS[code]


def _check_payload(payload: dict[str, object]) -> tuple[str, str] | None:
    if not payload.get("type"):
        return "no_type", "the message has no type"
    if not payload.get("userId") and not payload.get("anonymousId"):
        return "no_user_anon_id", "the message has neither userId nor anonymousId"
    return None


def _interpret(batch: SegmentBatch, exchange: Exchange) -> list[DeliveryResult]:
    if exchange.ok:
        return results(batch.message_ids, DeliveryStatus.SENT, attempts=exchange.attempts)
    return unconfirmed(batch.message_ids, exchange, reason_keys=("message", "error", "code"))


def _refused(message_id: str, code: str, reason: str) -> DeliveryResult:
    return DeliveryResult(message_id, DeliveryStatus.REJECTED, code, reason, attempts=0)
