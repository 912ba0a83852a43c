"""Context columns: CleverTap's ``profile``, ``deviceInfo`` and ``sessionProps`` in Segment's names.

A field of CleverTap's record that Segment's spec has a context field for lands in Segment's column
(:data:`SPEC_FIELDS`, the table in docs/decisions.md: ``deviceInfo.make`` -> ``context_device_manufacturer``,
``profile.push_token`` -> ``context_device_token``, ``deviceInfo.dpi`` -> ``context_screen_density``, ...).
Every other key keeps its object's prefix: ``context_traits_<key>`` (profile), ``context_device_<key>``
(deviceInfo), ``context_session_<key>`` (sessionProps). Keys that name one column (two spellings of a
key, or one field in two objects) fill it in order; a later one's other value goes to ``_unplaced_values``.
The numeric device fields are typed columns; a value that is not a number goes to ``_unplaced_values``
too. Everything else is VARCHAR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from ctsync.exports.records import KEY_SHAPES
from ctsync.naming import property_column
from ctsync.warehouse.columns import value_sql
from ctsync.warehouse.structure import Leaf, Node, ObjectReader, discover, duplicate_key_paths, leaves, merge_trees
from ctsync.warehouse.tables import Column, Overflow, overflow_column
from ctsync.warehouse.targets import Catalog
from ctsync.warehouse.unplaced import Unplaced

if TYPE_CHECKING:
    from ctsync.warehouse.events import IdentifierPriority


@dataclass(frozen=True)
class SpecField:
    """A field of CleverTap's event record and the column Segment's spec gives it."""

    source: str
    """The record's object: ``profile``, ``deviceInfo`` or ``sessionProps``."""
    path: tuple[str, ...]
    column: str
    type: str = "VARCHAR"
    divisor: int | None = None
    """The column holds the value divided by this (``dpi / 160`` is Segment's screen density)."""


SPEC_FIELDS: tuple[SpecField, ...] = (
    SpecField("profile", ("push_token",), "context_device_token"),
    SpecField("deviceInfo", ("token",), "context_device_token"),
    SpecField("deviceInfo", ("make",), "context_device_manufacturer"),
    SpecField("deviceInfo", ("appVersion",), "context_app_version"),
    SpecField("deviceInfo", ("osVersion",), "context_os_version"),
    SpecField("deviceInfo", ("sdkVersion",), "context_device_sdk_version", "BIGINT"),
    SpecField("deviceInfo", ("dpi",), "context_screen_density", "DOUBLE", 160),
    SpecField("deviceInfo", ("dimensions", "width"), "context_screen_width", "DOUBLE"),
    SpecField("deviceInfo", ("dimensions", "height"), "context_screen_height", "DOUBLE"),
    SpecField("sessionProps", ("utm_source",), "context_campaign_source"),
    SpecField("sessionProps", ("utm_medium",), "context_campaign_medium"),
    SpecField("sessionProps", ("utm_campaign",), "context_campaign_name"),
    SpecField("sessionProps", ("utm_term",), "context_campaign_term"),
    SpecField("sessionProps", ("utm_content",), "context_campaign_content"),
)
"""CleverTap fields with a column of Segment's spec (or, for the typed CleverTap-only ``sdkVersion``, a type)."""

SPEC_BY_PATH = {(field.source, field.path): field for field in SPEC_FIELDS}


@dataclass(frozen=True)
class ContextObject:
    """One of the record's context objects, as the event-row query reads it."""

    json_column: str
    struct: str
    prefix: str
    """The column prefix of its keys that have no spec column."""


OBJECTS = (
    ContextObject("profile", "p", "context_traits_"),
    ContextObject("deviceInfo", "d", "context_device_"),
    ContextObject("sessionProps", "s", "context_session_"),
)


def generic_column(source: str, path: tuple[str, ...]) -> str:
    """The column a key of ``source`` gets without a spec column (``deviceInfo.dpi`` -> ``context_device_dpi``)."""
    prefix = next(item.prefix for item in OBJECTS if item.json_column == source)
    return property_column(path, prefix=prefix)


def column_of(source: str, path: tuple[str, ...]) -> SpecField | None:
    return SPEC_BY_PATH.get((source, path))


@dataclass
class ContextPlan:
    """One table's context columns and how its event-row query reads the objects that fill them."""

    columns: list[Column]
    """Each overflows into its objects' overflow columns when a table has no room."""
    profile: ObjectReader
    device: ObjectReader
    session: ObjectReader
    unplaced: Unplaced
    """The table's values that no standard or context column holds (see ``ctsync.warehouse.unplaced``)."""


@dataclass(frozen=True)
class _Key:
    """A key of one context object that fills a column."""

    source: ContextObject
    reader: ObjectReader
    leaf: Leaf

    @property
    def text(self) -> str:
        return f"cast({self.reader.access(self.leaf.path)} as varchar)"

    @property
    def pointer(self) -> tuple[str, str, tuple[str, ...]]:
        """(JSON column, its pointer in the line, the key's path in it)."""
        return self.source.json_column, "/" + self.source.json_column, self.leaf.path


def context_columns(
    trees: dict[str, Node], readers: dict[str, ObjectReader], unplaced: Unplaced, current: dict[str, str]
) -> list[Column]:
    """One column per spec field or other key of the objects' key ``trees``. Keys that share a column coalesce
    in order (profile, deviceInfo, sessionProps; keys in discovery order); the later ones' other values, the
    values a typed column cannot take, and the objects' duplicate keys go to ``unplaced``. ``current``: the
    table's columns and their types (an existing column keeps its type)."""
    merged: dict[str, list[_Key]] = {}
    for item in OBJECTS:
        tree = trees[item.json_column]
        for leaf in leaves(tree.children):
            field = column_of(item.json_column, leaf.path)
            column = field.column if field is not None else property_column(leaf.path, prefix=item.prefix)
            merged.setdefault(column, []).append(_Key(item, readers[item.json_column], leaf))
    result = []
    for column, keys in merged.items():
        texts = [key.text for key in keys]
        text = texts[0] if len(texts) == 1 else f"coalesce({', '.join(texts)})"
        field = next((f for key in keys if (f := column_of(key.source.json_column, key.leaf.path))), None)
        type_ = current.get(column) or (field.type if field is not None else "VARCHAR")
        expression, untyped = value_sql(text, type_)
        if untyped is not None:
            unplaced.add_untyped([key.pointer for key in keys], texts, expression, column, type_)
        if field is not None and field.divisor is not None and type_ == "DOUBLE":
            expression = f"({expression}) / {field.divisor}.0"
        overflows = tuple(
            Overflow(
                overflow_column(item.prefix),
                item.json_column,
                tuple(key.leaf.path for key in keys if key.source is item),
            )
            for item in OBJECTS
            if any(key.source is item for key in keys)
        )
        result.append(Column(column, type_, expression, overflows))
        if len(keys) > 1:
            unplaced.add_spelling_sources([key.pointer for key in keys], texts, column)
    for item in OBJECTS:
        for path in duplicate_key_paths(trees[item.json_column]):
            unplaced.add_duplicates(item.json_column, path, "/" + item.json_column)
    return result


def plan_context(
    con: duckdb.DuckDBPyConnection, priority: IdentifierPriority, names: dict[str, str], existing: Catalog
) -> dict[str, ContextPlan]:
    """The context columns of each event table (``names``: event name -> table), from that table's own
    rows: a table gets a context column only where its events have that key, whatever else the batch holds.
    ``existing``: the schema's tables and column types."""
    where = "reason is null"

    def found(column: str) -> dict[str, Node]:
        by_name = discover(con, "_ct_rows", column, group="eventName", where=where, shapes=KEY_SHAPES[column])
        trees: dict[str, Node] = {}
        for name, root in by_name.items():
            if name is not None and name in names:
                merge_trees(trees.setdefault(names[name], Node(kinds={"OBJECT"})), root)
        return trees

    by_object = {item.json_column: found(item.json_column) for item in OBJECTS}
    with_extras = {
        names[str(row[0])]
        for row in con.execute(
            "select distinct eventName from _ct_rows where reason is null and extras is not null"
        ).fetchall()
        if str(row[0]) in names
    }
    # The identifier fields first: of two keys that differ only in case, they get the STRUCT.
    profile_keys = [(key,) for key in dict.fromkeys([*priority.user_id, priority.anonymous_id, "objectId", "identity"])]
    plans: dict[str, ContextPlan] = {}
    for table in sorted(set(names.values())):
        trees = {name: found_trees.get(table) or Node() for name, found_trees in by_object.items()}
        readers = {}
        for item in OBJECTS:
            paths = [leaf.path for leaf in leaves(trees[item.json_column].children)]
            first = profile_keys if item.json_column == "profile" else []
            readers[item.json_column] = ObjectReader.plan(item.json_column, item.struct, [*first, *paths])
        unplaced = Unplaced()
        if table in with_extras:
            unplaced.add_list("extras")
        plans[table] = ContextPlan(
            columns=context_columns(trees, readers, unplaced, existing.get(table, {})),
            profile=readers["profile"],
            device=readers["deviceInfo"],
            session=readers["sessionProps"],
            unplaced=unplaced,
        )
    return plans
