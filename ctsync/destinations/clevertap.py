"""CleverTap Upload API destination: Identify calls become profile records.

``POST {base}/1/upload`` with ``{"d": [...]}``, at most 1000 records a request. A record is
confirmed only when the answer is 2xx, its ``status`` is ``success`` and the record is not
listed in ``unprocessed``; anything CleverTap could not be read as accepting stays
unconfirmed (see ``reference/clevertap.md`` §3.5).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import SecretStr

from ctsync.destinations.base import DeliveryResult, DeliveryStatus, OutboundMessage
from ctsync.destinations.http import (
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
from ctsync.naming import NamingError, snake_case

REGIONS = ("eu1", "in1", "us1", "sg1", "aps3", "mec1", "sk1")
"""CleverTap regions: the subdomain of the account's dashboard (``eu1`` is shown as global)."""

MAX_RECORDS_PER_REQUEST = 1000
MAX_CONCURRENCY = 15
"""CleverTap answers 429 beyond 15 concurrent upload requests per account."""

RESERVED_TRAITS = {
    "name": "Name",
    "birthday": "DOB",
    "avatar": "Photo",
    "gender": "Gender",
    "phone": "Phone",
    "email": "Email",
}
"""Segment spec traits (by their snake_case name) that have a CleverTap system property."""

_GENDERS = {
    "m": "M",
    "male": "M",
    "man": "M",
    "boy": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "girl": "F",
}
"""Spellings of the two genders CleverTap takes (``M``/``F``; anything else is refused with 514)."""
_RECORD_NUMBER = re.compile(r"record number\s*:\s*(\d+)", re.IGNORECASE)
_CLEVERTAP_DATE = re.compile(r"\$D_-?\d+")
_EPOCH_TEXT = re.compile(r"-?\d+(\.\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|z|[+-]\d\d:?\d\d)")
"""A date, or a date and time with its offset: the values a date or timestamp trait holds (Engage
requires the offset), sent as CleverTap dates. Other strings stay strings."""
_MILLISECONDS_FROM = 1e11
"""Epoch numbers at or above this are taken as milliseconds (1e11 seconds is year 5138)."""


def region_base_url(region: str) -> str:
    """``https://api.clevertap.com`` for eu1, ``https://<region>.api.clevertap.com`` otherwise."""
    code = region.strip().lower()
    if code not in REGIONS:
        raise CtsyncError(
            f"unknown CleverTap region {region!r}: use one of {', '.join(REGIONS)} "
            "(the subdomain of your CleverTap dashboard URL)"
        )
    return "https://api.clevertap.com" if code == "eu1" else f"https://{code}.api.clevertap.com"


class RecordError(ValueError):
    """An Identify that cannot become a CleverTap record; it is rejected without being sent."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def profile_record(payload: dict[str, Any], left_out: list[str] | None = None) -> dict[str, Any]:
    """The CleverTap profile record for one Identify payload.

    Values CleverTap would refuse (a gender other than M/F, a birthday that is no date) are left
    out of the record and named in ``left_out`` (``<field>: <reason>``); the rest is sent.
    """
    user_id = _identifier(payload.get("userId"))
    anonymous_id = _identifier(payload.get("anonymousId"))
    if user_id is None and anonymous_id is None:
        raise RecordError("missing_identity", "the Identify has neither userId nor anonymousId")
    profile = profile_data(payload.get("traits"), left_out)
    record: dict[str, Any] = {"type": "profile"}
    if anonymous_id is not None:
        record["objectId"] = anonymous_id
        if user_id is not None:
            profile["Identity"] = user_id
    else:
        record["identity"] = user_id
    timestamp = payload.get("timestamp")
    if timestamp is not None:
        try:
            record["ts"] = math.floor(epoch_seconds(timestamp))
        except ValueError as exc:
            raise RecordError("bad_timestamp", f"timestamp {timestamp!r}: {exc}") from None
    record["profileData"] = profile
    return record


def profile_data(traits: object, left_out: list[str] | None = None) -> dict[str, Any]:
    """Traits as CleverTap profile properties (system names, else snake_case).

    Dates and timestamps (ISO-8601 with an offset) become ``$D_<epoch seconds>``; a system
    property's value CleverTap would refuse is left out and named in ``left_out``.
    """
    notes = left_out if left_out is not None else []
    if traits is None:
        return {}
    if not isinstance(traits, dict):
        raise RecordError("bad_traits", "traits must be a JSON object")
    profile: dict[str, Any] = {}
    for key, value in traits.items():
        try:
            name = snake_case(str(key))
        except NamingError:
            raise RecordError(
                "bad_trait_name",
                f"trait {key!r} has no ASCII letter or digit, so it has no CleverTap property name",
            ) from None
        reserved = RESERVED_TRAITS.get(name)
        if reserved is None:
            profile[name] = property_value(value)
            continue
        try:
            profile[reserved] = _system_value(reserved, value)
        except LeftOut as exc:
            notes.append(f"{reserved}: {exc}")
    return profile


def property_value(value: object) -> object:
    """A custom property's value as CleverTap takes it: a date or timestamp string (ISO-8601; a
    time needs its offset) becomes ``$D_<epoch seconds>``, so CleverTap can segment on it as a
    date; everything else is sent as it is."""
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.fullmatch(text) or _ISO_MOMENT.fullmatch(text):
            try:
                return clevertap_date(text)
            except ValueError:
                return value  # looks like a date but is none (2024-02-30): a plain string
    return value


def clevertap_date(value: object) -> str:
    """``$D_<epoch seconds>`` from any date or epoch form: an ISO date or datetime, an epoch
    number or numeric string (seconds, or milliseconds from 1e11 on), or a ``$D_`` string."""
    if isinstance(value, str) and _CLEVERTAP_DATE.fullmatch(value.strip()):
        return value.strip()
    return f"$D_{math.floor(epoch_seconds(value))}"


def epoch_seconds(value: object) -> float:
    """Seconds since the epoch for an ISO-8601 string, a date/datetime or an epoch number.

    Naive datetimes and plain dates are taken as UTC; numbers (and strings of digits) of 1e11
    and above as milliseconds. Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):
        value = Decimal(value.strip())
    if isinstance(value, int | float | Decimal):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number / 1000 if abs(number) >= _MILLISECONDS_FROM else number
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not a date, a datetime or an epoch number") from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    raise ValueError(f"expected a date, got {type(value).__name__}")


class LeftOut(ValueError):
    """A value CleverTap would refuse; it is left out of the record (the reason is counted)."""


def _system_value(prop: str, value: object) -> object:
    if value is None:
        return None
    if prop == "DOB":
        try:
            return clevertap_date(value)
        except ValueError:
            raise LeftOut("the birthday is not a date, a datetime or an epoch number") from None
    if prop == "Gender":
        gender = _GENDERS.get(value.strip().lower()) if isinstance(value, str) else None
        if gender is None:
            raise LeftOut("the gender is neither M nor F (CleverTap refuses other values with 514)")
        return gender
    return property_value(value)


def _identifier(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, int | str) else None
    return text or None


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """One ``/1/upload`` request: its records, the messages they came from, and the body."""

    message_ids: list[str]
    records: list[dict[str, Any]]
    body: bytes
    left_out: dict[str, tuple[str, ...]] = dataclass_field(default_factory=dict)
    """Per message: the values left out of its record (:func:`profile_record`)."""


class CleverTapUploadClient:
    """Sends Identify calls to CleverTap's Upload API as profile records."""

    kind = "clevertap"

    def __init__(
        self,
        account_id: str,
        passcode: SecretStr | str,
        *,
        region: str | None = None,
        base_url: str | None = None,
        name: str = "clevertap",
        concurrency: int = 3,
        batch_size: int = MAX_RECORDS_PER_REQUEST,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not account_id.strip():
            raise CtsyncError("the CleverTap account id is empty")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CtsyncError(
                f"CleverTap concurrency must be between 1 and {MAX_CONCURRENCY} "
                f"(CleverTap answers 429 beyond {MAX_CONCURRENCY} requests in flight); "
                f"got {concurrency}"
            )
        if not 1 <= batch_size <= MAX_RECORDS_PER_REQUEST:
            raise CtsyncError(f"CleverTap batch_size must be between 1 and {MAX_RECORDS_PER_REQUEST}; got {batch_size}")
        secret = passcode if isinstance(passcode, SecretStr) else SecretStr(passcode)
        if not secret.get_secret_value():
            raise CtsyncError("the CleverTap passcode is empty")
        if base_url is not None:
            base = check_base_url(base_url)
            base = base.removesuffix("/1")
        elif region is not None:
            base = region_base_url(region)
        else:
            raise CtsyncError(f"set the CleverTap region (one of {', '.join(REGIONS)}) or a base URL")
        self.name = name
        self.account_id = account_id.strip()
        self.batch_size = batch_size
        self.url = f"{base}/1/upload"
        self._sender: HttpSender[UploadRequest] = self.upload_sender(
            concurrency=concurrency, timeout=timeout, retry=retry or RetryPolicy(), secret=secret
        )
        self._timeout = timeout
        self._retry = retry or RetryPolicy()

    def upload_sender(
        self,
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        retry_unanswered: bool = True,
        secret: SecretStr | None = None,
    ) -> HttpSender[Any]:
        """A sender to this account's ``/1/upload`` (another for event uploads, which must not repeat
        a request that may have arrived: ``retry_unanswered=False``)."""
        passcode: SecretStr = secret if secret is not None else self._passcode
        self._passcode: SecretStr = passcode
        return HttpSender(
            url=self.url,
            headers={
                "X-CleverTap-Account-Id": self.account_id,
                "X-CleverTap-Passcode": passcode.get_secret_value(),
                "Content-Type": "application/json; charset=utf-8",
            },
            concurrency=concurrency if concurrency is not None else self._sender.concurrency,
            timeout=timeout if timeout is not None else self._timeout,
            retry=retry if retry is not None else self._retry,
            label=self.name,
            retry_unanswered=retry_unanswered,
        )

    @property
    def concurrency(self) -> int:
        return self._sender.concurrency

    def __repr__(self) -> str:
        return (
            f"CleverTapUploadClient(name={self.name!r}, url={self.url!r}, "
            f"account_id={self.account_id!r}, concurrency={self.concurrency})"
        )

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        return self._sender.run(self._requests(messages), self._interpret)

    def close(self) -> None:
        self._sender.close()

    def __enter__(self) -> CleverTapUploadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _requests(self, messages: Sequence[OutboundMessage]) -> Iterator[UploadRequest | Settled]:
        ids: list[str] = []
        records: list[dict[str, Any]] = []
        parts: list[bytes] = []
        refused: list[DeliveryResult] = []
        left_out: dict[str, tuple[str, ...]] = {}
        for message in messages:
            notes: list[str] = []
            try:
                record = profile_record(message.payload, notes)
                part = dump_json(record)
            except RecordError as exc:
                refused.append(_refused(message.message_id, exc.code, exc.reason))
                continue
            except TypeError as exc:
                refused.append(_refused(message.message_id, "not_json", str(exc)))
                continue
            if notes:
                left_out[message.message_id] = tuple(notes)
            ids.append(message.message_id)
            records.append(record)
            parts.append(part)
            if len(ids) == self.batch_size:
                if refused:
                    yield Settled(refused)
                    refused = []
                yield UploadRequest(ids, records, b'{"d":[' + b",".join(parts) + b"]}", left_out)
                ids, records, parts, left_out = [], [], [], {}
        if refused:
            yield Settled(refused)
        if ids:
            yield UploadRequest(ids, records, b'{"d":[' + b",".join(parts) + b"]}", left_out)

    def _interpret(self, request: UploadRequest, exchange: Exchange) -> list[DeliveryResult]:
        if not exchange.ok:
            answered = unconfirmed(request.message_ids, exchange, reason_keys=("error", "message"))
        else:
            answered = read_upload_answer(request, exchange)
        return with_left_out(answered, request.left_out)


def with_left_out(answered: list[DeliveryResult], left_out: dict[str, tuple[str, ...]]) -> list[DeliveryResult]:
    """The results, each naming the values left out of its record."""
    if not left_out:
        return answered
    return [replace(r, left_out=left_out[r.message_id]) if r.message_id in left_out else r for r in answered]


def read_upload_answer(request: UploadRequest, exchange: Exchange) -> list[DeliveryResult]:
    """Per-record results from a 2xx answer to ``request``."""
    attempts = exchange.attempts
    answer = _json_object(exchange.body)
    unprocessed = answer.get("unprocessed", []) if answer is not None else None
    if answer is None or not isinstance(unprocessed, list):
        return results(
            request.message_ids,
            DeliveryStatus.FAILED,
            attempts=attempts,
            code=str(exchange.status),
            reason="CleverTap's answer is not the expected JSON object; nothing is confirmed",
        )
    refused: dict[int, DeliveryResult] = {}
    unmatched = 0
    for entry in unprocessed:
        index = _locate(entry, request.records, taken=refused.keys())
        if index is None:
            unmatched += 1
            continue
        refused[index] = DeliveryResult(
            request.message_ids[index],
            DeliveryStatus.REJECTED,
            code=str(entry.get("code")) if entry.get("code") is not None else None,
            reason=str(entry.get("error") or "listed as unprocessed by CleverTap"),
            attempts=attempts,
        )
    doubt = _doubt(answer, unmatched, expected=len(request.records) - len(refused))
    out: list[DeliveryResult] = []
    for index, message_id in enumerate(request.message_ids):
        if index in refused:
            out.append(refused[index])
        elif doubt is None:
            out.append(DeliveryResult(message_id, DeliveryStatus.SENT, attempts=attempts))
        else:
            out.append(DeliveryResult(message_id, DeliveryStatus.FAILED, str(exchange.status), doubt, attempts))
    return out


def _doubt(answer: dict[str, Any], unmatched: int, *, expected: int) -> str | None:
    """Why the records not listed as unprocessed cannot be confirmed, if they cannot."""
    status = answer.get("status")
    if status != "success":
        return f"CleverTap answered status {status!r}, so this record is not confirmed"
    if unmatched:
        return (
            f"CleverTap listed {unmatched} unprocessed record(s) that could not be matched "
            "to this request, so none of its records is confirmed"
        )
    processed = answer.get("processed")
    if isinstance(processed, int) and not isinstance(processed, bool) and processed < expected:
        return f"CleverTap processed {processed} of {expected} records without saying which, so none is confirmed"
    return None


def _locate(entry: object, records: list[dict[str, Any]], *, taken: Collection[int]) -> int | None:
    """Index of the record an ``unprocessed`` entry refers to, or None if unsure."""
    if not isinstance(entry, dict):
        return None
    error = entry.get("error")
    if isinstance(error, str):
        found = _RECORD_NUMBER.search(error)
        if found and 1 <= int(found.group(1)) <= len(records):
            index = int(found.group(1)) - 1
            return None if index in taken else index
    record = entry.get("record")
    if isinstance(record, str):
        try:
            record = orjson.loads(record)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(record, dict):
        return None
    free = [i for i in range(len(records)) if i not in taken]
    exact = [i for i in free if records[i] == record]
    if exact:
        return exact[0]
    key = _record_key(record)
    same_key = [i for i in free if key is not None and _record_key(records[i]) == key]
    return same_key[0] if len(same_key) == 1 else None


def _record_key(record: dict[str, Any]) -> tuple[str, str] | None:
    for field in ("identity", "objectId"):
        if record.get(field) is not None:
            return field, str(record[field])
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _refused(message_id: str, code: str, reason: str) -> DeliveryResult:
    return DeliveryResult(message_id, DeliveryStatus.REJECTED, code, reason, attempts=0)
