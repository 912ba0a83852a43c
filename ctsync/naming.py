"""The one place a name becomes a warehouse identifier.

``snake_case`` is segmentio/go-snakecase v1.1.0, byte for byte: bytes that are not ASCII
letters or digits are separators (so every byte of a non-ASCII character is one), a word is
a run of capitals and digits followed by a run of lowercase letters and digits, and words
are joined by a single ``_``. ``macros/naming/snake_case.sql`` is its dbt twin; both are
checked against ``tests/data/naming_cases.csv``.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from ctsync.errors import CtsyncError

# One go-snakecase word: a maximal [A-Z0-9] run, then a maximal [a-z0-9] run. Matching on the
# UTF-8 bytes is what v1.1.0 does; on ``str`` it gives the same result, because every byte of a
# non-ASCII character is >= 0x80 and so a separator either way.
_WORD = re.compile(rb"[A-Z0-9]*[a-z0-9]*")
_NOT_SCHEMA_CHAR = re.compile(r"[^a-z0-9]+")

RESERVED_COLUMNS = frozenset(
    {
        "id",
        "user_id",
        "anonymous_id",
        "event",
        "event_text",
        "timestamp",
        "original_timestamp",
        "sent_at",
        "received_at",
        "uuid",
        "uuid_ts",
        "loaded_at",
        "group_id",
        "previous_id",
        "context",
    }
)
"""Standard column names a property may not take (Segment's reserved set, see decisions.md)."""

RESERVED_TABLES = frozenset({"tracks", "identifies", "users", "pages", "screens", "groups", "accounts", "aliases"})
"""Segment's own table names: an event with one of these names gets a ``_`` prefix."""

COLUMN_SPELLINGS = {"ct_connected_to_wi_fi": "ct_connected_to_wifi"}
"""Property columns CleverTap spells two ways whose go-snakecase forms differ (``CT Connected To WiFi``
and ``ct_connected_to_wifi``): the first name is read as the second, so both spellings fill one column."""

VARIANT_SUFFIX = "__v_varchar"
"""Suffix of the column that keeps values which do not fit their column's type."""


class NamingError(CtsyncError):
    """A name cannot become an identifier."""


def snake_case(name: str) -> str:
    """Return go-snakecase v1.1.0 of ``name``; raise :class:`NamingError` if nothing is left.

    >>> snake_case("CT App Version"), snake_case("A/B Experiment Stopped"), snake_case("HTTPServer")
    ('ct_app_version', 'a_b_experiment_stopped', 'httpserver')
    """
    result = snake_case_or_empty(name)
    if not result:
        raise NamingError(
            f"{name!r} has no ASCII letter or digit, so it has no snake_case name. "
            "Rename it at the source, or let the loader map it (see docs/decisions.md)."
        )
    return result


@lru_cache(maxsize=65536)
def snake_case_or_empty(name: str) -> str:
    """go-snakecase v1.1.0 of ``name``, ``""`` when it has no ASCII letter or digit."""
    words = [word.lower() for word in _WORD.findall(name.encode("utf-8")) if word]
    return b"_".join(words).decode("ascii")


def identifier_for(name: str) -> str:
    """snake_case, shortened to fit, or the documented fallback for names with no ASCII letter or digit.

    Such a name (for example an event named in Devanagari, or an empty key) becomes ``u_``
    followed by the first 12 hex digits of the SHA-1 of its UTF-8 bytes: stable and
    collision-resistant; the original text is kept (``event_text`` for events).
    """
    result = snake_case_or_empty(name) or "u_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
    return fit_identifier(result)


def event_table(event_name: str) -> str:
    """Table for an event name: its snake_case (``App Launched`` -> ``app_launched``).

    An event whose name is one of Segment's own tables (an event called ``Users``) gets a
    ``_`` prefix, so it can never land in ``users``.
    """
    table = identifier_for(event_name)
    return fit_identifier("_" + table) if table in RESERVED_TABLES else table


def property_column(path: tuple[str, ...], prefix: str = "") -> str:
    """Column name for a (possibly nested) property path.

    Nested keys are joined with ``_`` after snake-casing each key; a name in :data:`COLUMN_SPELLINGS` is
    read as the one it lists (``CT Connected To WiFi`` -> ``ct_connected_to_wifi``). Names that would take a
    standard column (``id``, ``user_id``, ``event``, ``timestamp``, any ``context_*``, ...)
    get a ``_`` prefix; snake_case never yields a leading ``_``, so the prefixed name cannot
    collide with another property.
    """
    column = prefix + "_".join(identifier_for(key) for key in path)
    if not prefix:
        column = COLUMN_SPELLINGS.get(column, column)
        if column in RESERVED_COLUMNS or column.startswith("context_"):
            column = "_" + column
    return fit_identifier(column)


def schema_name(nickname: str) -> str:
    """Warehouse schema for a source nickname: lowercase, other characters become ``_``.

    >>> schema_name("CleverTap_Prod"), schema_name("CleverTap Staging (EU)")
    ('clevertap_prod', 'clevertap_staging_eu')
    """
    schema = _NOT_SCHEMA_CHAR.sub("_", nickname.lower()).strip("_")
    if not schema:
        raise NamingError(
            f"the nickname {nickname!r} has no ASCII letter or digit; choose a nickname such as CleverTap_Prod"
        )
    return schema


def quote_identifier(name: str) -> str:
    """Double-quote an identifier for SQL (DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"


MAX_IDENTIFIER_LENGTH = 63
"""PostgreSQL keeps 63 bytes of a name; every warehouse gets the same, shortened, names."""


def fit_identifier(name: str, limit: int = MAX_IDENTIFIER_LENGTH) -> str:
    """``name`` if it fits in ``limit`` bytes, else its first bytes plus a hash of the whole.

    ``a_very_long_property_name…`` becomes the first ``limit - 13`` characters, ``_`` and the
    first 12 hex digits of the SHA-1 of the full name: two long names that share their first
    50 characters still get different identifiers, and the same name always gets the same one.
    """
    if len(name.encode("utf-8")) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
    return name[: limit - 13].rstrip("_") + "_" + digest
