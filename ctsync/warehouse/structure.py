"""Discover the shape of JSON objects in a batch, and turn it into columns.

For every (group, key path) the batch holds we learn its keys exactly (every row is read)
and the JSON kinds its values take (``VARCHAR``, ``BIGINT``, ``UBIGINT``, ``DOUBLE``,
``BOOLEAN``, ``ARRAY``, ``OBJECT``, ``NULL``) from a sample of up to ``SAMPLE_ROWS`` rows per
group. Kinds only choose a new column's type: every value is then read as text and cast
only where the cast gives back the same text, the rest going to the variant column, so a
kind the sample missed costs a variant value, never a lost one. Objects are flattened (their
keys become ``parent_child`` columns) unless some row holds a non-object at that key; arrays
are kept as JSON text. All of it runs in DuckDB over the whole batch, never row by row in Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import duckdb

from ctsync.naming import quote_identifier

SAMPLE_ROWS = 20_000
"""Rows per group whose value kinds are read to choose new columns' types."""

MAX_DEPTH = 5
"""Objects nested deeper than this are kept as JSON text in one column."""


@dataclass
class Node:
    """One key of a JSON object: the kinds of its values and, for objects, its children."""

    kinds: set[str] = field(default_factory=set)
    children: dict[str, Node] = field(default_factory=dict)
    mixed_object: bool = False
    """Some rows hold an object at this key and others a scalar or array: keep it as text."""

    @property
    def is_object(self) -> bool:
        """Flatten only keys whose non-null values are all objects."""
        return "OBJECT" in self.kinds and not self.mixed_object


@dataclass(frozen=True)
class Leaf:
    """A column-to-be: the key path and the kinds its values take in this batch."""

    path: tuple[str, ...]
    kinds: frozenset[str]


def json_path(path: Sequence[str]) -> str:
    """A JSON Pointer (RFC 6901) for a key path: exact for every key, the empty one and those with
    spaces, dots, quotes or ``$`` included (DuckDB's ``$.""`` path refuses an empty key)."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)


def sql_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def json_path_sql(path: Sequence[str]) -> str:
    """:func:`json_path` as a SQL string literal."""
    return sql_literal(json_path(path))


def discover(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    group: str | None = None,
    where: str = "true",
    shapes: str | None = None,
) -> dict[str | None, dict[str, Node]]:
    """Key tree of the JSON objects in ``relation.column``, per value of ``group``.

    ``shapes`` names a column holding a hash of each row's list of top-level keys of ``column``
    (taken when the row was staged): the top level then parses one row per distinct list, not all.
    """
    group_sql = group if group is not None else "null::varchar"
    trees: dict[str | None, dict[str, Node]] = {}
    frontier: list[tuple[str | None, tuple[str, ...], dict[str, Node]]] = []

    source = f"select {group_sql} as grp, {column} as value from {relation} where {column} is not null and ({where})"
    if shapes is not None:
        source = (
            f"select {group_sql} as grp, any_value({column}) as value from {relation} "
            f"where {shapes} is not null and ({where}) group by {group_sql}, {shapes}"
        )
    top_level = f"select distinct grp, unnest(json_keys(value)) as key from ({source})"
    rows = con.execute(f"select grp, key from ({top_level}) order by grp nulls first, key").fetchall()
    for grp, key in rows:
        tree = trees.setdefault(grp, {})
        tree.setdefault(key, Node())
    for grp, tree in trees.items():
        frontier.append((grp, (), tree))

    depth = 0
    while frontier and depth < MAX_DEPTH:
        depth += 1
        next_frontier: list[tuple[str | None, tuple[str, ...], dict[str, Node]]] = []
        level = [(grp, [(*prefix, key) for key in tree]) for grp, prefix, tree in frontier]
        level_kinds = _kinds(con, relation, column, group_sql, level, where)
        for (grp, _prefix, tree), (_grp, paths), kinds in zip(frontier, level, level_kinds, strict=True):
            for path, node_kinds in zip(paths, kinds, strict=True):
                node = tree[path[-1]]
                node.kinds |= node_kinds
                if "OBJECT" in node.kinds and depth < MAX_DEPTH:
                    children, mixed = _child_keys(con, relation, column, group_sql, grp, path, where)
                    node.mixed_object = mixed
                    if not mixed:
                        for child in children:
                            node.children.setdefault(child, Node())
                        if node.children:
                            next_frontier.append((grp, path, node.children))
        frontier = next_frontier
    return trees


def _group_filter(group_sql: str, grp: str | None) -> tuple[str, list[object]]:
    if grp is None:
        return f"{group_sql} is null", []
    return f"{group_sql} = ?", [grp]


def _kinds(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    group_sql: str,
    level: list[tuple[str | None, list[tuple[str, ...]]]],
    where: str,
) -> list[list[set[str]]]:
    """For each (group, paths) of ``level``, the kinds of the values at each path in the group's sample.

    One statement for the whole level (a UNION ALL of per-group samples), so DuckDB reads the
    groups in parallel.
    """
    result: list[list[set[str]]] = [[set() for _ in paths] for _, paths in level]
    selects: list[str] = []
    params: list[object] = []
    for index, (grp, paths) in enumerate(level):
        if not paths:
            continue
        condition, group_params = _group_filter(group_sql, grp)
        selects.append(
            f"""
            select {index} as level_index, unnest(range(?)) as position, unnest(json_type(value, ?)) as kind
            from (
                select {column} as value
                from {relation}
                where {column} is not null and {condition} and ({where})
                limit {SAMPLE_ROWS}
            )
            """
        )
        params += [len(paths), [json_path(path) for path in paths], *group_params]
    if not selects:
        return result
    rows = con.execute(
        f"""
        select level_index, position, list(distinct kind)
        from ({" union all ".join(selects)})
        where kind is not null
        group by level_index, position
        """,
        params,
    ).fetchall()
    for level_index, position, kinds in rows:
        result[level_index][position] = set(kinds)
    return result


def _child_keys(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    group_sql: str,
    grp: str | None,
    path: tuple[str, ...],
    where: str,
) -> tuple[list[str], bool]:
    """Keys of the objects at ``path`` (all rows), and whether any row has a non-object there."""
    condition, params = _group_filter(group_sql, grp)
    path_sql = json_path(path)
    rows = con.execute(
        f"""
        with typed as materialized (
            select {column} as value, json_type({column}, ?) as kind
            from {relation}
            where {column} is not null and {condition} and ({where})
        )
        select
            (select list(distinct key) from (
                select unnest(json_keys(value, ?)) as key from typed where kind = 'OBJECT'
            )),
            (select coalesce(bool_or(kind not in ('OBJECT', 'NULL')), false) from typed where kind is not null)
        """,
        [path_sql, *params, path_sql],
    ).fetchall()
    keys, mixed = rows[0] if rows else ([], False)
    return sorted(str(key) for key in keys or []), bool(mixed)


def merge_trees(target: dict[str, Node], other: dict[str, Node]) -> None:
    """Fold ``other`` into ``target`` (two event names that share a table)."""
    for key, node in other.items():
        mine = target.setdefault(key, Node())
        mine.kinds |= node.kinds
        mine.mixed_object = mine.mixed_object or node.mixed_object
        merge_trees(mine.children, node.children)


def leaves(tree: dict[str, Node], prefix: tuple[str, ...] = ()) -> list[Leaf]:
    """Flatten a key tree into the leaves that become columns (all-null keys included)."""
    result: list[Leaf] = []
    for key, node in tree.items():
        path = (*prefix, key)
        if node.is_object and node.children:
            result.extend(leaves(node.children, path))
        else:
            result.append(Leaf(path=path, kinds=frozenset(node.kinds)))
    return result


def text_spec(paths: Iterable[tuple[str, ...]]) -> str:
    """The json_transform structure (as JSON text) that reads every path as text.

    Text is lossless for every JSON value: strings as they are, numbers and booleans in
    DuckDB's canonical rendering, arrays and objects as JSON.
    """
    spec: dict[str, object] = {}
    for path in paths:
        node = spec
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = "VARCHAR"
    return json.dumps(spec)


def struct_paths(paths: Iterable[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The key paths one json_transform STRUCT can hold.

    DuckDB's STRUCT field names ignore case, so a structure with both ``Email`` and ``email``
    under one parent is refused. Of keys that differ only in case under one parent, the first
    listed goes into the STRUCT; the others, and paths through an empty key (no STRUCT field can
    be named ""), are read by JSON path, which matches keys exactly.
    """
    claimed: dict[tuple[str, ...], dict[str, str]] = {}
    held: set[tuple[str, ...]] = set()
    for path in paths:
        for depth, key in enumerate(path):
            if not key or claimed.setdefault(path[:depth], {}).setdefault(key.lower(), key) != key:
                break
        else:
            held.add(path)
    return held


@dataclass(frozen=True)
class ObjectReader:
    """How a query reads the leaves of one JSON column: a json_transform into the STRUCT ``struct``
    for most, a JSON path (``json_extract_string``) for keys the STRUCT cannot hold (see
    :func:`struct_paths`). Both give the same text for a value."""

    json_column: str
    """The JSON column as the query that reads the leaves sees it."""
    struct: str
    in_struct: frozenset[tuple[str, ...]]

    @classmethod
    def plan(cls, json_column: str, struct: str, paths: Sequence[tuple[str, ...]]) -> ObjectReader:
        """``paths`` in priority order: of two that differ only in case, the first gets the STRUCT."""
        return cls(json_column, struct, frozenset(struct_paths(paths)))

    def transform_sql(self, column_sql: str | None = None) -> str:
        """The json_transform that makes the STRUCT (``null`` when it holds nothing), reading
        ``column_sql`` (default: the JSON column)."""
        if not self.in_struct:
            return "null"
        spec = sql_literal(text_spec(sorted(self.in_struct)))
        return f"json_transform({column_sql or self.json_column}, {spec})"

    def access(self, path: Sequence[str]) -> str:
        """SQL for the text of the value at ``path`` (NULL when absent or JSON null)."""
        if tuple(path) in self.in_struct:
            return self.struct + "".join("." + quote_identifier(key) for key in path)
        return f"json_extract_string({self.json_column}, {json_path_sql(path)})"
