"""Shared HTTP machinery for destinations: one client, a bounded pool, retries, verdicts.

A destination turns its messages into prepared requests (a body plus the message ids it
carries) and hands them to :meth:`HttpSender.run` with a function that reads the final
answer. ``run`` sends at most ``concurrency`` requests at once, retries what is worth
retrying (timeouts, dropped connections, 408/429/5xx except 501/505) with exponential
backoff, jitter and ``Retry-After``, and yields each request's results as soon as it
completes. Headers are never logged: they carry the credentials.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

import httpx
import orjson

from ctsync.destinations.base import DeliveryResult, DeliveryStatus
from ctsync.errors import CtsyncError

logger = logging.getLogger(__name__)

RETRY_AFTER_CAP_SECONDS = 300.0
"""Longest ``Retry-After`` obeyed (the official Segment SDK caps it at 300 s too)."""

DEFAULT_RETRY_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""HTTP statuses worth another try: the server may answer differently next time."""

AUTH_FAILURE_STATUSES = frozenset({401, 403})
"""Statuses after which the remaining requests are not sent: every one would be refused."""

NOT_SENT = "not_sent"
"""Result code of a message that was never sent because the delivery was abandoned."""

_REASON_LIMIT = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request: bounded attempts and a time budget per request."""

    max_attempts: int = 8
    initial_backoff: float = 0.5
    """Delay before the first retry, in seconds; it doubles with each retry."""
    max_backoff: float = 60.0
    max_elapsed: float = 300.0
    """No retry starts once this many seconds have passed since the first attempt."""
    jitter: float = 0.5
    """Up to this fraction of each backoff delay is randomly taken off."""
    retry_after_cap: float = RETRY_AFTER_CAP_SECONDS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise CtsyncError("max_attempts must be at least 1")
        if min(self.initial_backoff, self.max_backoff, self.max_elapsed) < 0:
            raise CtsyncError("backoff delays and the retry time budget cannot be negative")
        if not 0 <= self.jitter <= 1:
            raise CtsyncError("jitter must be between 0 and 1")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (1 for the first retry)."""
        delay = min(self.max_backoff, self.initial_backoff * 2.0 ** (retry_number - 1))
        return delay * (1 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class Exchange:
    """The final answer to one request, after any retries."""

    status: int | None
    """HTTP status of the last attempt; ``None`` when no answer came back."""
    body: bytes
    attempts: int
    gave_up: bool
    """The last outcome was worth retrying, but the attempts or the time budget ran out."""
    error_code: str | None = None
    """``timeout``, ``connection`` or ``transport`` when no answer came back."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class PreparedRequest(Protocol):
    """One request body and the ids of the messages it carries."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_ids(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Settled:
    """Results decided without a request, such as a message refused by a local limit check."""

    results: list[DeliveryResult]


R = TypeVar("R", bound=PreparedRequest)

AttemptHook = Callable[[bytes, int], tuple[bytes, Mapping[str, str]]]
"""``hook(body, retries)``: the body and extra headers of one attempt, given the prepared body and
how many attempts came before it (0 for the first), for APIs that stamp each attempt."""


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None
    body: bytes = b""
    retry_after: float | None = None
    retryable: bool = False
    error_code: str | None = None
    error: str | None = None


class _Breaker:
    """Stops a delivery after an auth failure or after several requests in a row gave up."""

    def __init__(self, max_consecutive_failures: int) -> None:
        self._lock = threading.Lock()
        self._max = max_consecutive_failures
        self._consecutive = 0
        self.reason: str | None = None

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            if exchange.status in AUTH_FAILURE_STATUSES:
                self.reason = (
                    f"not sent: an earlier request was refused with HTTP {exchange.status}; "
                    "check the credentials and the region or base URL"
                )
            elif exchange.gave_up:
                self._consecutive += 1
                if self._consecutive >= self._max and self.reason is None:
                    self.reason = (
                        f"not sent: {self._consecutive} requests in a row failed after retries "
                        f"(last: {describe_failure(exchange)})"
                    )
            else:
                self._consecutive = 0


class HttpSender(Generic[R]):
    """POSTs prepared bodies to one URL with a concurrency cap, retries and backoff."""

    def __init__(
        self,
        *,
        url: str,
        headers: Mapping[str, str],
        concurrency: int,
        timeout: float,
        retry: RetryPolicy,
        retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES,
        max_consecutive_failures: int = 3,
        label: str = "destination",
        attempt_hook: AttemptHook | None = None,
        retry_unanswered: bool = True,
    ) -> None:
        if concurrency < 1:
            raise CtsyncError("concurrency must be at least 1")
        if timeout <= 0:
            raise CtsyncError("the request timeout must be a positive number of seconds")
        self.url = url
        self.concurrency = concurrency
        self.retry = retry
        self._retry_statuses = retry_statuses
        self._max_consecutive_failures = max_consecutive_failures
        self._label = label
        self._attempt_hook = attempt_hook
        self._retry_unanswered = retry_unanswered
        """Retry timeouts and dropped connections (False where a repeat of a request that did
        arrive would not be idempotent, such as event uploads)."""
        self._client = httpx.Client(
            headers=dict(headers),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=label)
        self._closing = threading.Event()
        self._rng = random.Random()

    def run(
        self,
        items: Iterable[R | Settled],
        interpret: Callable[[R, Exchange], list[DeliveryResult]],
    ) -> Iterator[list[DeliveryResult]]:
        """Send every request; yield each one's results as soon as it completes."""
        if self._closing.is_set():
            raise CtsyncError(f"the {self._label} destination is closed")
        breaker = _Breaker(self._max_consecutive_failures)
        pending: set[Future[list[DeliveryResult]]] = set()
        window = self.concurrency * 2
        try:
            for item in items:
                if isinstance(item, Settled):
                    yield item.results
                    continue
                while len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
                pending.add(self._pool.submit(self._send, item, interpret, breaker))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        finally:
            for future in pending:
                future.cancel()

    def _send(
        self,
        request: R,
        interpret: Callable[[R, Exchange], list[DeliveryResult]],
        breaker: _Breaker,
    ) -> list[DeliveryResult]:
        reason = breaker.reason
        if reason is not None:
            return not_sent(request.message_ids, reason)
        exchange = self.post(request.body)
        breaker.record(exchange)
        return interpret(request, exchange)

    def post(self, body: bytes) -> Exchange:
        """POST ``body``, retrying within the policy; return the final answer."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            if self._attempt_hook is None:
                attempt = self._attempt(body, {})
            else:
                attempt = self._attempt(*self._attempt_hook(body, attempts - 1))
            if not attempt.retryable:
                return _exchange(attempt, attempts, gave_up=False)
            delay = self._delay(attempts, attempt)
            elapsed = time.monotonic() - started
            outcome = _describe_attempt(attempt)
            if attempts >= self.retry.max_attempts or elapsed + delay > self.retry.max_elapsed:
                logger.warning(
                    "%s: giving up on a request after %d attempt(s) in %.1fs: %s",
                    self._label,
                    attempts,
                    elapsed,
                    outcome,
                )
                return _exchange(attempt, attempts, gave_up=True)
            logger.info("%s: attempt %d got %s; retrying in %.2fs", self._label, attempts, outcome, delay)
            if self._closing.wait(delay):
                return _exchange(attempt, attempts, gave_up=True)

    def _attempt(self, body: bytes, headers: Mapping[str, str]) -> _Attempt:
        try:
            response = self._client.post(self.url, content=body, headers=dict(headers) if headers else None)
        except httpx.TimeoutException as exc:
            return _Attempt(None, retryable=self._retry_unanswered, error_code="timeout", error=_error_text(exc))
        except httpx.ConnectError as exc:  # no connection was made: nothing was sent
            return _Attempt(None, retryable=True, error_code="connect", error=_error_text(exc))
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return _Attempt(None, retryable=self._retry_unanswered, error_code="connection", error=_error_text(exc))
        except httpx.HTTPError as exc:
            return _Attempt(None, error_code="transport", error=_error_text(exc))
        return _Attempt(
            response.status_code,
            body=response.content,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            retryable=response.status_code in self._retry_statuses,
        )

    def _delay(self, attempts: int, attempt: _Attempt) -> float:
        if attempt.retry_after is not None:
            return min(attempt.retry_after, self.retry.retry_after_cap)
        return self.retry.backoff(attempts, self._rng)

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def results(
    message_ids: Iterable[str],
    status: DeliveryStatus,
    *,
    attempts: int,
    code: str | None = None,
    reason: str | None = None,
) -> list[DeliveryResult]:
    return [DeliveryResult(mid, status, code, reason, attempts) for mid in message_ids]


def not_sent(message_ids: Iterable[str], reason: str) -> list[DeliveryResult]:
    return results(message_ids, DeliveryStatus.FAILED, attempts=0, code=NOT_SENT, reason=reason)


def unconfirmed(message_ids: Iterable[str], exchange: Exchange, *, reason_keys: Sequence[str]) -> list[DeliveryResult]:
    """Results for a request that was not answered with a 2xx.

    No answer, a retryable status after the retries ran out, or an unexpected 1xx/3xx:
    FAILED (try again on the next run). Any other status: REJECTED.
    """
    reason = describe_failure(exchange, reason_keys=reason_keys)
    status = exchange.status
    if status is None or exchange.gave_up or status < 400:
        code = exchange.error_code if status is None else str(status)
        return results(message_ids, DeliveryStatus.FAILED, attempts=exchange.attempts, code=code, reason=reason)
    return results(
        message_ids,
        DeliveryStatus.REJECTED,
        attempts=exchange.attempts,
        code=str(status),
        reason=reason,
    )


def describe_failure(exchange: Exchange, *, reason_keys: Sequence[str] = ("message", "error")) -> str:
    if exchange.status is None:
        return exchange.error or "no answer"
    detail = error_detail(exchange.body, reason_keys)
    text = f"HTTP {exchange.status}" + (f": {detail}" if detail else "")
    if exchange.gave_up:
        text += f" (gave up after {exchange.attempts} attempts)"
    return text


def error_detail(body: bytes, keys: Sequence[str]) -> str:
    """The error message in a JSON error body, else the start of the body as text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:_REASON_LIMIT].decode("utf-8", "replace").strip()
    if isinstance(parsed, dict):
        for key in keys:
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value[:_REASON_LIMIT]
    return body[:_REASON_LIMIT].decode("utf-8", "replace").strip()


def dump_json(value: object) -> bytes:
    """orjson bytes of a payload; decimals become floats. TypeError if not serialisable."""
    return orjson.dumps(value, default=_json_default)


def check_base_url(base_url: str, *, setting: str = "base_url") -> str:
    """A base URL without its trailing slash; CtsyncError unless it is http(s)."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise CtsyncError(f"{setting} must be an http:// or https:// URL, for example http://127.0.0.1:8088")
    return url


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _exchange(attempt: _Attempt, attempts: int, *, gave_up: bool) -> Exchange:
    return Exchange(
        status=attempt.status,
        body=attempt.body,
        attempts=attempts,
        gave_up=gave_up,
        error_code=attempt.error_code,
        error=attempt.error,
    )


def _describe_attempt(attempt: _Attempt) -> str:
    if attempt.status is None:
        return attempt.error or "no answer"
    return f"HTTP {attempt.status}"


def _error_text(exc: httpx.HTTPError) -> str:
    detail = str(exc)[:_REASON_LIMIT]
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name
