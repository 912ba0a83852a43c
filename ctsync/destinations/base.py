"""The contract between the sync engine and a destination.

The engine hands a destination messages that are already stored in the outbox (each
with its final ``messageId``). The destination sends them, in as many requests as its
limits require, and reports back per message as each request completes, so the engine
can commit what was confirmed before the next request finishes.

A destination never decides what is confirmed on its own: it only reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class DeliveryStatus(StrEnum):
    SENT = "sent"
    """The destination acknowledged this message (2xx and not refused per record)."""
    REJECTED = "rejected"
    """The destination (or a documented limit) refused this message; sending it again as is
    would be refused again. Not confirmed."""
    FAILED = "failed"
    """Not acknowledged this run (timeouts, 429/5xx after retries, dropped connections, or an
    answer that confirms nothing). Not confirmed; retried on the next run."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One Identify call, as stored in the outbox."""

    message_id: str
    payload: dict[str, Any]
    """The full Engage-style Identify payload (type, userId, anonymousId, traits, context, messageId, timestamp)."""


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    message_id: str
    status: DeliveryStatus
    code: str | None = None
    """HTTP status or per-record error code (for example ``"429"``, ``"516"``, ``"too_large"``)."""
    reason: str | None = None
    """Human-readable reason from the destination or from a limit check."""
    attempts: int = 1
    """Requests that carried this message during this delivery (retries included)."""
    left_out: tuple[str, ...] = ()
    """Values the destination cannot take that were left out of what was sent, one
    ``<field>: <reason>`` each (for example a gender other than M/F); the rest was sent."""


class Destination(Protocol):
    """Something that receives Identify calls."""

    name: str
    """The configured name (``--destination NAME``)."""
    kind: str
    """``clevertap``, ``segment`` or ``jsonl``."""

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        """Send ``messages``; yield the results of each request as soon as it completes.

        Every message gets exactly one result across all yielded lists. Retries of
        retryable failures happen inside this call (bounded); whatever is still not
        acknowledged at the end is reported as FAILED.
        """
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
