"""Identify payloads as Engage sends them, built in SQL for the outbox (and in Python as a reference).

    {"type": "identify", "userId": "u1", "anonymousId": "a1",
     "traits": {"first_time_shopper": true, "email": "jane@example.com"},
     "context": {"personas": {"computation_class": "audience", "computation_id": "aud_…",
                              "computation_key": "first_time_shopper",
                              "namespace": "spa_ctsync", "space_id": "spa_ctsync"},
                 "library": {"name": "ctsync", "version": "0.1.0"}},
     "integrations": {"All": false, "CleverTap": true, "Warehouses": {"all": false}},
     "messageId": "personas_…", "timestamp": "2024-05-03T19:42:50.066Z",
     "originalTimestamp": "2024-05-03T19:42:50.066179Z"}

``userId`` and ``anonymousId`` are left out when unknown; ``traits.email`` is added when the
person has an email (``engage.engage_user_emails``), as Engage adds it, unless the computation's
own key is ``email``. ``integrations`` names the destination the way Engage's fan-out does
(:func:`engage_integrations`). The SQL builder and :func:`identify_payload` produce the same
text, key order included.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from ctsync.engage.state import Dialect
from ctsync.errors import CtsyncError

DEFAULT_SPACE_ID = "spa_ctsync"
SPACE_ID_ENV = "CTSYNC_SPACE_ID"
LIBRARY_NAME = "ctsync"
try:
    LIBRARY_VERSION = version("ctsync")
except PackageNotFoundError:  # running from a source tree that is not installed
    LIBRARY_VERSION = "unknown"
COMPUTATION_ID_PREFIX = {"audience": "aud_", "trait": "tra_"}

_SPACE_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def space_id_from(environ: Mapping[str, str], explicit: str | None = None) -> str:
    """The Engage space id for ``context.personas``: explicit, else ``CTSYNC_SPACE_ID``, else ``spa_ctsync``."""
    value = (explicit if explicit is not None else environ.get(SPACE_ID_ENV, "")).strip() or DEFAULT_SPACE_ID
    if not _SPACE_ID.fullmatch(value):
        raise CtsyncError(f"{SPACE_ID_ENV} must be letters, digits, _ or - (at most 64), such as spa_ctsync")
    return value


def computation_id(computation_class: str, key: str) -> str:
    """``aud_…`` / ``tra_…``: deterministic from the key, so it is the same on every run and machine."""
    return COMPUTATION_ID_PREFIX[computation_class] + hashlib.md5(key.encode()).hexdigest()[:24]


def iso_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``, as Engage writes ``timestamp``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_original_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and ``Z``: ``originalTimestamp``, the finer clock reading
    Engage sends next to ``timestamp`` (it writes nanoseconds; Python has microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ENGAGE_INTEGRATIONS: dict[str, dict[str, Any]] = {
    "clevertap": {"All": False, "CleverTap": True, "Warehouses": {"all": False}},
    "segment": {"All": True, "Warehouses": {"all": False}},
    "jsonl": {"All": True, "Warehouses": {"all": False}},
}
"""``integrations`` per destination kind. Engage fans one source out to many destinations, so it
turns every other one off (``All: false``) and names the one the call is for; CleverTap is that
one. A Segment-compatible endpoint is a source of its own whose destinations ctsync cannot name:
they all get the call (``All: true``), its warehouses do not (the audiences are already in this
one), as with Engage's own warehouse exclusion."""


def engage_integrations(kind: str) -> dict[str, Any]:
    """The ``integrations`` object of Identify calls to a destination of ``kind``."""
    return dict(ENGAGE_INTEGRATIONS.get(kind, ENGAGE_INTEGRATIONS["segment"]))


def identify_payload(
    *,
    computation_class: str,
    computation_key: str,
    value: Any,
    user_id: str | None,
    anonymous_id: str | None,
    message_id: str,
    timestamp: str,
    original_timestamp: str | None = None,
    space_id: str = DEFAULT_SPACE_ID,
    email: str | None = None,
    integrations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Identify payload for one change (Python reference of :func:`payload_sql`)."""
    payload: dict[str, Any] = {"type": "identify"}
    if user_id is not None:
        payload["userId"] = user_id
    if anonymous_id is not None:
        payload["anonymousId"] = anonymous_id
    payload["traits"] = {computation_key: value}
    if email is not None and computation_key != "email":
        payload["traits"]["email"] = email
    payload["context"] = {
        "personas": {
            "computation_class": computation_class,
            "computation_id": computation_id(computation_class, computation_key),
            "computation_key": computation_key,
            "namespace": space_id,
            "space_id": space_id,
        },
        "library": {"name": LIBRARY_NAME, "version": LIBRARY_VERSION},
    }
    payload["integrations"] = integrations if integrations is not None else engage_integrations("segment")
    payload["messageId"] = message_id
    payload["timestamp"] = timestamp
    payload["originalTimestamp"] = original_timestamp if original_timestamp is not None else timestamp
    return payload


def payload_context_sql(dialect: Dialect, computations: str) -> str:
    """SELECT of the parts of a payload that only depend on the computation, one row per computation.

    ``computations`` is a relation (or parenthesised subquery) with computation_class and
    computation_key, one row each. The result adds ``key_json`` (the key as a JSON string) and
    ``context_json`` (``,"context":{...}``). Binds: ``space_id_json`` and ``library_json``.
    ``offset 0`` keeps PostgreSQL from pulling the subquery up into the join it is used in, which
    would compute these expressions once per message instead of once per computation.
    """
    j = dialect.json_string
    audience_id = dialect.computation_id(COMPUTATION_ID_PREFIX["audience"], "computation_key")
    trait_id = dialect.computation_id(COMPUTATION_ID_PREFIX["trait"], "computation_key")
    computation = f"case when computation_class = 'audience' then {audience_id} else {trait_id} end"
    return f"""
        select
            computation_class,
            computation_key,
            {j("computation_key")} as key_json,
            ',"context":{{"personas":{{"computation_class":' || {j("computation_class")}
            || ',"computation_id":' || {j(computation)}
            || ',"computation_key":' || {j("computation_key")}
            || ',"namespace":' || :space_id_json || ',"space_id":' || :space_id_json
            || '}},"library":' || :library_json || '}}' as context_json
        from {computations} as computations
        offset 0
    """


def payload_sql(dialect: Dialect, row: str, context: str, email: str | None = None) -> str:
    """SQL building the payload text from ``row``'s and ``context``'s columns.

    ``row`` is the alias of a relation with user_id, anonymous_id, value (JSON text) and
    message_id; ``context`` the alias of :func:`payload_context_sql`'s row for its computation;
    ``email`` the SQL of the person's email (NULL: none), when emails are known. Binds:
    ``timestamp_json``, ``original_timestamp_json`` and ``integrations_json`` (set by the caller
    from :func:`payload_constants`). messageIds are ``personas_`` and hex digits
    (:func:`message_id_prefix`), so they need no escaping.
    """
    j = dialect.json_string
    email_part = (
        f"|| case when {email} is not null and {context}.computation_key <> 'email'"
        f" then ',\"email\":' || {j(email)} else '' end"
        if email is not None
        else ""
    )
    return f"""(
        '{{"type":"identify"'
        || case when {row}.user_id is not null then ',"userId":' || {j(f"{row}.user_id")} else '' end
        || case when {row}.anonymous_id is not null then ',"anonymousId":' || {j(f"{row}.anonymous_id")} else '' end
        || ',"traits":{{' || {context}.key_json || ':' || {row}.value {email_part} || '}}'
        || {context}.context_json
        || ',"integrations":' || :integrations_json
        || ',"messageId":"' || {row}.message_id || '","timestamp":' || :timestamp_json
        || ',"originalTimestamp":' || :original_timestamp_json || '}}'
    )"""


def message_id_prefix(moment: datetime) -> str:
    """The first 18 of the 32 hex digits of the messageIds a run creates: its time and a random part.

    The rest is the message's ``seq`` (:meth:`ctsync.engage.state.Dialect.new_message_id`), so one
    run's ids are unique and increase in send order, like Engage's time-ordered ``personas_`` ids
    (and a server warehouse appends them to the messageId index instead of scattering them).
    """
    milliseconds = int(moment.timestamp() * 1000)
    return f"{milliseconds:012x}"[-12:] + secrets.token_hex(3)


def payload_constants(
    space_id: str,
    timestamp: str,
    *,
    original_timestamp: str | None = None,
    integrations: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Bind parameters of :func:`payload_sql`, each already JSON-encoded."""
    return {
        "space_id_json": orjson.dumps(space_id).decode(),
        "library_json": orjson.dumps({"name": LIBRARY_NAME, "version": LIBRARY_VERSION}).decode(),
        "timestamp_json": orjson.dumps(timestamp).decode(),
        "original_timestamp_json": orjson.dumps(original_timestamp or timestamp).decode(),
        "integrations_json": orjson.dumps(
            integrations if integrations is not None else engage_integrations("segment")
        ).decode(),
    }
