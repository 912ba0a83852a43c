"""Warehouse event rows as CleverTap Upload API event records, as Segment's CleverTap destination maps them.

    Track        -> a custom event named like the event (``event_text``), its properties
                    lowercased and snake_cased, without nested objects or arrays
    Order Completed -> ``Charged``: order_id (or checkout_id) -> ``Charged ID``, total (else
                    revenue) -> ``Amount``, currency -> ``Currency``, products -> ``Items``
    Page         -> ``Web Page Viewed``;  Screen -> ``App Screen Viewed``
    push token   -> a ``token`` record (``context_device_token``, or the
                    ``context_traits_push_token`` of a warehouse an earlier ctsync loaded and no load has
                    upgraded yet): fcm for Android, apns for Apple devices

The person is the ``objectId`` when the row has an ``anonymous_id`` (the CleverTap ID, as the
destination's cloud mode uses it; the Identify sync links it to the identity), else the
``identity`` (``user_id``). ``ts`` is the event's time in epoch seconds. Dates become
``$D_<epoch>``. A value CleverTap cannot take in an event is left out and named; a row that
cannot become an event at all (no person, no time, a CleverTap system event CleverTap refuses to
take: 513) raises :class:`EventRejected`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from ctsync.destinations.clevertap import epoch_seconds, property_value
from ctsync.naming import RESERVED_COLUMNS, snake_case_or_empty

EventKind = Literal["track", "page", "screen"]

PAGE_EVENT = "Web Page Viewed"
SCREEN_EVENT = "App Screen Viewed"
CHARGED_EVENT = "Charged"
ORDER_COMPLETED = "order_completed"
"""snake_case of Segment's ``Order Completed``, the Track sent as CleverTap's Charged."""

RESTRICTED_EVENTS = frozenset(
    {
        "Stayed",
        "Notification Clicked",
        "Notification Viewed",
        "UTM Visited",
        "Notification Sent",
        "App Launched",
        "wzrk_d",
        "App Uninstalled",
        "Notification Bounced",
        "Geocluster Entered",
        "Geocluster Exited",
    }
)
"""System events CleverTap refuses to take from outside (code 513, "Raised a restricted system event")."""

STANDARD_COLUMNS = (RESERVED_COLUMNS - {"group_id", "previous_id", "context"}) | {"source_relation", "_unplaced_values"}
"""Segment's (and ctsync's) columns that describe the call, not the event: never properties."""

_VARIANT_SUFFIX = "__v_varchar"
_NAME_CHARACTERS = str.maketrans("", "", ".:$'\"\\")
"""Removed from event names, as CleverTap's SDK validator does."""
_APPLE = ("ios", "ipados", "iphone", "ipad", "apple", "macos", "tvos", "watchos")
_ANDROID = ("android",)
NESTED = "nested objects and arrays are not allowed in CleverTap event properties"


class EventRejected(ValueError):
    """A row that cannot become a CleverTap event; it is rejected without being sent."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class MappedEvent:
    """The records one warehouse row becomes, and the values left out of them."""

    records: list[dict[str, Any]]
    left_out: list[str] = field(default_factory=list)


def event_records(row: Mapping[str, Any], kind: EventKind) -> MappedEvent:
    """The CleverTap records (the event, then its device token if any) for one warehouse row."""
    left_out: list[str] = []
    person = _person(row)
    name = event_name(row, kind)
    properties = _properties(row, left_out)
    if name == CHARGED_EVENT:
        properties = _charged(properties, row, left_out)
    record: dict[str, Any] = {"type": "event", **person, "ts": _ts(row), "evtName": name, "evtData": properties}
    records = [record]
    token = token_record(row, person, left_out)
    if token is not None:
        records.append(token)
    return MappedEvent(records, left_out)


def event_name(row: Mapping[str, Any], kind: EventKind) -> str:
    """``Web Page Viewed``, ``App Screen Viewed``, ``Charged`` for Order Completed, else the event's name."""
    if kind == "page":
        return PAGE_EVENT
    if kind == "screen":
        return SCREEN_EVENT
    text = _text(row.get("event_text")) or _text(row.get("event"))
    if text is None:
        raise EventRejected("509", "the row has no event name (event_text or event)")
    if snake_case_or_empty(text) == ORDER_COMPLETED:
        return CHARGED_EVENT
    name = text.translate(_NAME_CHARACTERS).strip()
    if not name:
        raise EventRejected("509", f"the event name {text!r} has nothing CleverTap keeps")
    if name in RESTRICTED_EVENTS:
        raise EventRejected("513", f"{name} is a CleverTap system event; CleverTap refuses it from outside (513)")
    return name


def _person(row: Mapping[str, Any]) -> dict[str, str]:
    anonymous_id = _text(row.get("anonymous_id"))
    if anonymous_id is not None:
        return {"objectId": anonymous_id}
    user_id = _text(row.get("user_id"))
    if user_id is not None:
        return {"identity": user_id}
    raise EventRejected("523", "the row has neither user_id nor anonymous_id")


def _ts(row: Mapping[str, Any]) -> int:
    for column in ("timestamp", "original_timestamp"):
        value = row.get(column)
        if value is not None:
            try:
                return math.floor(epoch_seconds(value))
            except ValueError as exc:
                raise EventRejected("525", f"{column} {value!r}: {exc}") from None
    raise EventRejected("525", "the row has no timestamp")


def _properties(row: Mapping[str, Any], left_out: list[str]) -> dict[str, Any]:
    """Property columns, snake_cased, with values CleverTap takes (a ``__v_varchar`` twin fills its column's gap)."""
    properties: dict[str, Any] = {}
    for column, value in row.items():
        name = str(column).lower()
        if name in STANDARD_COLUMNS or name.startswith("context_") or value is None:
            continue
        if name.endswith(_VARIANT_SUFFIX):
            name = name.removesuffix(_VARIANT_SUFFIX)
            if row.get(name) is not None:
                continue
        key = snake_case_or_empty(name)
        if not key:
            left_out.append(f"{name}: the property name has no ASCII letter or digit")
            continue
        if isinstance(value, dict | list | tuple):
            if key in ("products", "items"):  # Charged's items; a custom event cannot take them
                properties[key] = value
                continue
            left_out.append(f"{key}: {NESTED}")
            continue
        properties[key] = _value(value)
    return properties


def _value(value: object) -> object:
    if isinstance(value, datetime | date):
        return f"$D_{math.floor(epoch_seconds(value))}"
    if isinstance(value, Decimal):
        return float(value)
    return property_value(value)


def _charged(properties: dict[str, Any], row: Mapping[str, Any], left_out: list[str]) -> dict[str, Any]:
    """Order Completed's (or an exported Charged's) properties in CleverTap's Charged shape."""
    data = dict(properties)
    charged: dict[str, Any] = {}
    for key in ("order_id", "checkout_id", "charged_id"):
        if key in data:
            charged["Charged ID"] = data.pop(key)
            break
    for key in ("total", "revenue", "amount"):
        if key in data:
            charged["Amount"] = data.pop(key)
            break
    if "currency" in data:
        charged["Currency"] = data.pop("currency")
    if "payment_mode" in data:
        charged["Payment mode"] = data.pop("payment_mode")
    items_key = "products" if "products" in data else "items" if "items" in data else None
    if items_key is not None:
        items = _items(data.pop(items_key), left_out)
        if items is not None:
            charged["Items"] = items
    for key, value in list(data.items()):
        if isinstance(value, dict | list | tuple):
            left_out.append(f"{key}: {NESTED}")
            del data[key]
    return {**charged, **data}


def _items(value: object, left_out: list[str]) -> list[dict[str, Any]] | None:
    """Items as CleverTap's Charged takes them: an array of flat objects (from an array or its JSON text)."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            left_out.append("Items: the products are not a JSON array")
            return None
    if not isinstance(value, list | tuple) or not all(isinstance(item, dict) for item in value):
        left_out.append("Items: the products are not an array of objects")
        return None
    items: list[dict[str, Any]] = []
    for item in value:
        flat: dict[str, Any] = {}
        for key, item_value in item.items():
            name = snake_case_or_empty(str(key))
            if not name or item_value is None:
                continue
            if isinstance(item_value, dict | list):
                left_out.append(f"Items.{name}: {NESTED}")
                continue
            flat[name] = _value(item_value)
        items.append(flat)
    return items


def token_record(row: Mapping[str, Any], person: Mapping[str, str], left_out: list[str]) -> dict[str, Any] | None:
    """A ``token`` record for the row's push token (``context_device_token``, else an earlier ctsync's
    ``context_traits_push_token``), typed fcm or apns from a ``fcm:``/``apns:`` prefix or the platform."""
    raw = _text(row.get("context_device_token")) or _text(row.get("context_traits_push_token"))
    if raw is None:
        return None
    prefix, separator, rest = raw.partition(":")
    token_type: str | None
    if separator and prefix.lower() in ("fcm", "apns") and rest:
        token_type, token = prefix.lower(), rest
    else:
        token_type, token = _token_type(row), raw
    if token_type is None:
        left_out.append("token: the device's platform is neither Android nor Apple, so its token type is unknown")
        return None
    return {"type": "token", **person, "tokenData": {"id": token, "type": token_type}}


def _token_type(row: Mapping[str, Any]) -> str | None:
    for column in (
        "context_os_name",
        "context_device_type",
        "context_traits_platform",
        "context_device_manufacturer",
        "context_device_make",
    ):
        platform = (_text(row.get(column)) or "").lower()
        if platform.startswith(_APPLE):
            return "apns"
        if platform.startswith(_ANDROID):
            return "fcm"
    return None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None
