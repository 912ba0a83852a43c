"""``_unplaced_values``: the values of a record that no column holds, kept per row.

A value can be in a record and still have no column to go to:

* a key named twice in one object (``{"a": 1, "a": 2}``, a second ``eventName``): the first
  occurrence fills the column;
* two spellings of one column in the same record with different values (``Order Count`` and
  ``order_count``, ``Email`` and ``email``): the spelling that sorts first fills the column;
* a top-level field outside CleverTap's event record.

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
        for index in range(1, len(paths)):
            earlier = texts[0] if index == 1 else f"coalesce({', '.join(texts[:index])})"
            pointer = json_path(paths[index])
            value = f"json_extract({json_column}, {sql_literal(pointer)})"
            entry = entry_sql(sql_literal(base_pointer + pointer), value, f"column {column} holds another spelling")
            self.parts.append(_Part(f"{texts[index]} <> {earlier}", f"[{entry}]"))

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
