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
    duplicate_keys: bool = False
    """Some row's object at this key names a key twice (``{"a": 1, "a": 2}``): only the first occurrence
    gets the column, the later ones go to ``_unplaced_values``."""

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
) -> dict[str | None, Node]:
    """The key tree of the JSON objects in ``relation.column``, per value of ``group``: the root node of
    each group, whose children are the objects' top-level keys.

    ``shapes`` names a column holding a hash of each row's list of top-level keys of ``column``
    (taken when the row was staged): the top level then parses one row per distinct list, not all.
    """
    group_sql = group if group is not None else "null::varchar"
    roots: dict[str | None, Node] = {}
    frontier: list[tuple[str | None, tuple[str, ...], dict[str, Node]]] = []

    source = f"select {group_sql} as grp, {column} as value from {relation} where {column} is not null and ({where})"
    if shapes is not None:
        source = (
            f"select {group_sql} as grp, any_value({column}) as value from {relation} "
            f"where {shapes} is not null and ({where}) group by {group_sql}, {shapes}"
        )
    rows = con.execute(
        f"""
        with keyed as materialized (select grp, json_keys(value) as keys from ({source}))
        select distinct grp, unnest(keys) as key, false as duplicated from keyed
        union all
        select distinct grp, null, true from keyed where len(keys) <> len(list_distinct(keys))
        order by grp nulls first, key nulls first
        """
    ).fetchall()
    for grp, key, duplicated in rows:
        root = roots.setdefault(grp, Node(kinds={"OBJECT"}))
        if duplicated:
            root.duplicate_keys = True
        else:
            root.children.setdefault(key, Node())
    for grp, root in roots.items():
        frontier.append((grp, (), root.children))

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
                    children, node.mixed_object, node.duplicate_keys = _child_keys(
                        con, relation, column, group_sql, grp, path, where
                    )
                    if not node.mixed_object:
                        for child in children:
                            node.children.setdefault(child, Node())
                        if node.children:
                            next_frontier.append((grp, path, node.children))
        frontier = next_frontier
    return roots


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

    A path whose sampled values are all null or absent (a key only later rows have) is read again in
    every row of its group: a key with a value anywhere in the batch always gets its column.
    """
    result: list[list[set[str]]] = [[set() for _ in paths] for _, paths in level]
    for (index, position), kinds in _kinds_of(con, relation, column, group_sql, level, where, SAMPLE_ROWS).items():
        result[index][position] = kinds
    positions = [[i for i, kinds in enumerate(found) if kinds <= {"NULL"}] for found in result]
    if any(positions):
        unseen = [(grp, [paths[i] for i in wanted]) for (grp, paths), wanted in zip(level, positions, strict=True)]
        for (index, position), kinds in _kinds_of(con, relation, column, group_sql, unseen, where, None).items():
            result[index][positions[index][position]] = kinds
    return result


def _kinds_of(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    group_sql: str,
    level: list[tuple[str | None, list[tuple[str, ...]]]],
    where: str,
    limit: int | None,
) -> dict[tuple[int, int], set[str]]:
    """(group index, path index) -> the kinds of the values there, in the first ``limit`` rows of each group
    (all rows: None). One statement for the whole level (a UNION ALL of per-group reads), so DuckDB reads
    the groups in parallel."""
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
                {f"limit {limit}" if limit is not None else ""}
            )
            """
        )
        params += [len(paths), [json_path(path) for path in paths], *group_params]
    if not selects:
        return {}
    rows = con.execute(
        f"""
        select level_index, position, list(distinct kind)
        from ({" union all ".join(selects)})
        where kind is not null
        group by level_index, position
        """,
        params,
    ).fetchall()
    return {(int(level_index), int(position)): set(kinds) for level_index, position, kinds in rows}


def _child_keys(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    column: str,
    group_sql: str,
    grp: str | None,
    path: tuple[str, ...],
    where: str,
) -> tuple[list[str], bool, bool]:
    """Keys of the objects at ``path`` (all rows), whether any row has a non-object there, and whether
    any row's object there names a key twice."""
    condition, params = _group_filter(group_sql, grp)
    path_sql = json_path(path)
    rows = con.execute(
        f"""
        with typed as materialized (
            select kind, case when kind = 'OBJECT' then json_keys(value, ?) end as keys
            from (
                select {column} as value, json_type({column}, ?) as kind
                from {relation}
                where {column} is not null and {condition} and ({where})
            )
        ),
        key_lists as materialized (select distinct keys from typed where keys is not null)
        select
            (select list(distinct key) from (select unnest(keys) as key from key_lists)),
            (select coalesce(bool_or(kind not in ('OBJECT', 'NULL')), false) from typed where kind is not null),
            (select coalesce(bool_or(len(keys) <> len(list_distinct(keys))), false) from key_lists)
        """,
        [path_sql, path_sql, *params],
    ).fetchall()
    keys, mixed, duplicated = rows[0] if rows else ([], False, False)
    return sorted(str(key) for key in keys or []), bool(mixed), bool(duplicated)


def merge_trees(target: Node, other: Node) -> None:
    """Fold ``other`` into ``target`` (two event names that share a table)."""
    target.kinds |= other.kinds
    target.mixed_object = target.mixed_object or other.mixed_object
    target.duplicate_keys = target.duplicate_keys or other.duplicate_keys
    for key, node in other.children.items():
        merge_trees(target.children.setdefault(key, Node()), node)


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


def duplicate_key_paths(node: Node, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the flattened objects (the root is ``()``) where some row names a key twice. An object
    kept whole as JSON text keeps its duplicate keys in that text."""
    if not (node.is_object and node.children):
        return []
    found = [prefix] if node.duplicate_keys else []
    for key, child in node.children.items():
        found.extend(duplicate_key_paths(child, (*prefix, key)))
    return found


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
