"""``_unplaced_values``: the values of a record that no column holds, kept per row.

A value can be in a record and still have no column to go to:

* a key named twice in one object (``{"a": 1, "a": 2}``, a second ``eventName``): the first
  occurrence fills the column;
* two spellings of one column in the same record with different values (``Order Count`` and
  ``order_count``, ``Email`` and ``email``): the spelling that sorts first fills the column;
* a top-level field outside CleverTap's event record;
* a value a typed context column cannot take (``"xhdpi"`` for ``deviceInfo.dpi``, a number column).

Each such value is kept in the row's ``_unplaced_values`` column (VARCHAR holding a JSON array,
created when a row first needs it) as ``{"path": <JSON Pointer into the line>, "value": <the JSON
value>, "reason": ...}``. A spelling whose value equals the one the column holds is not repeated.
All of it is SQL evaluated in the same insert that fills the row, and only when the batch holds
such a case: a batch without one pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ctsync.exports.records import ENTRY_TYPE, keys_beyond_sql
from ctsync.warehouse.structure import json_path, sql_literal

UNPLACED_COLUMN = "_unplaced_values"


def entry_sql(path_sql: str, value_sql: str, reason: str) -> str:
    """One unplaced value, as the SQL struct ``_unplaced_values`` lists."""
    return f"{{'path': {path_sql}, 'value': {value_sql}, 'reason': {sql_literal(reason)}}}::{ENTRY_TYPE}"


Source = tuple[str, str, tuple[str, ...]]
"""Where a value sits: the JSON column holding it, that column's pointer in the line, the key path in it."""


def _source_entry(source: Source, reason: str) -> str:
    json_column, base_pointer, path = source
    pointer = json_path(path)
    value = f"json_extract({json_column}, {sql_literal(pointer)})"
    return entry_sql(sql_literal(base_pointer + pointer), value, reason)


def has_duplicates_sql(keys_sql: str) -> str:
    return f"len({keys_sql}) <> len(list_distinct({keys_sql}))"


@dataclass(frozen=True)
class _Part:
    when: str
    """SQL: whether this row has anything here (cheap: evaluated on every row)."""
    values: str
    """SQL list of the entries (evaluated only on rows where ``when`` holds)."""


@dataclass
class Unplaced:
    """What one insert gathers into ``_unplaced_values``: helper columns for the inner query, and the
    parts (each a condition and a list of entries) the column concatenates."""

    helpers: list[str] = field(default_factory=list)
    """``<expression> as <name>``, computed once per row in the query the column's SQL reads."""
    parts: list[_Part] = field(default_factory=list)

    def add_list(self, list_sql: str) -> None:
        """A column of the source holding a list of entries, or NULL."""
        self.parts.append(_Part(f"{list_sql} is not null", list_sql))

    def add_duplicates(self, json_column: str, path: tuple[str, ...], base_pointer: str) -> None:
        """Later occurrences of a key in the object at ``path`` of ``json_column`` (``()``: the object itself),
        whose pointer in the line is ``base_pointer``."""
        keys = f"_unplaced_keys_{len(self.helpers)}"
        pointer = sql_literal(json_path(path))
        self.helpers.append(f"json_keys({json_column}{', ' + pointer if path else ''}) as {keys}")
        object_sql = f"json_extract({json_column}, {pointer})" if path else json_column
        self.parts.append(
            _Part(has_duplicates_sql(keys), keys_beyond_sql(object_sql, keys, base_pointer + json_path(path)))
        )

    def add_spellings(
        self, json_column: str, base_pointer: str, paths: Sequence[tuple[str, ...]], texts: Sequence[str], column: str
    ) -> None:
        """Spellings that share ``column``: each later spelling's value (``texts``: SQL for each path's text,
        in the order they fill the column), when an earlier spelling filled the column with another value."""
        self.add_spelling_sources([(json_column, base_pointer, path) for path in paths], texts, column)

    def add_spelling_sources(self, sources: Sequence[Source], texts: Sequence[str], column: str) -> None:
        """:meth:`add_spellings` for keys that may sit in different JSON columns (``sources``)."""
        for index in range(1, len(sources)):
            earlier = texts[0] if index == 1 else f"coalesce({', '.join(texts[:index])})"
            entry = _source_entry(sources[index], f"column {column} holds another spelling")
            self.parts.append(_Part(f"{texts[index]} <> {earlier}", f"[{entry}]"))

    def add_untyped(
        self, sources: Sequence[Source], texts: Sequence[str], typed_sql: str, column: str, type_: str
    ) -> None:
        """The value that fills ``column`` (the first of ``sources`` with a value; ``texts``: SQL for each one's
        text) when it is not a ``type_`` (``typed_sql``, the column's value, is NULL for it)."""
        chosen = texts[0] if len(texts) == 1 else f"coalesce({', '.join(texts)})"
        reason = f"not a {type_} value, the type of column {column}"
        branches = " ".join(
            f"when {text} is not null then [{_source_entry(source, reason)}]"
            for source, text in zip(sources, texts, strict=True)
        )
        self.parts.append(_Part(f"{chosen} is not null and ({typed_sql}) is null", f"case {branches} end"))

    def extend(self, other: Unplaced) -> None:
        self.helpers += other.helpers
        self.parts += other.parts

    @property
    def empty(self) -> bool:
        return not self.parts

    def column_sql(self) -> str:
        """The ``_unplaced_values`` value: a JSON array of the row's unplaced values, NULL when none. Rows with
        none (nearly all) are told apart by the parts' cheap conditions, before any list is built."""
        lists = [f"case when coalesce({part.when}, false) then {part.values} end" for part in self.parts]
        gathered = lists[0] if len(lists) == 1 else f"list_concat({', '.join(lists)})"
        when = " or ".join(f"coalesce({part.when}, false)" for part in self.parts)
        return f"case when {when} then cast(to_json({gathered}) as varchar) end"
