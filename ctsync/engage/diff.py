"""The diff: what a destination should be told, computed in SQL against what it CONFIRMED.

Inputs (built by dbt in schema ``engage``): ``engage_audiences``, ``engage_audience_memberships``,
``engage_traits`` and ``engage_computed_traits``. A person is named by ``user_id`` when present,
else by ``anonymous_id``; anonymous-only people count only for audiences with
``include_anonymous`` (checked here even though dbt filters them too).

Computed traits follow ``engage_traits.include_anonymous`` when that column exists; without it,
the anonymous-only rows dbt publishes are taken as they are (dbt filters them per trait).

A person whose key changed since the last run (a visitor who signed in: ``anonymous_id`` A is
now ``user_id`` U) is one profile at the destination; what it confirmed under the old key is
moved to the new one first (:mod:`ctsync.engage.rekey`), so that profile is never told ``false``
(or ``null``) under one key while it still holds the value under the other.

For every (computation, person) the wanted value is ``true`` for a current member and
``false`` otherwise (audiences), or the current value and ``null`` when it is gone (traits).
A change is sent when the wanted value differs from

* the confirmed value (``sync_state``; absent means ``false`` / ``null``: nothing was ever said), or
* any value that may have reached the destination without being confirmed: messages after the
  confirmed one with a hand-off that got no definitive answer ("in doubt": a timeout, a
  failure after retries, or a run killed after the request but before its commit).

So the first sync of an audience sends every member ``true``, later syncs send entries and
exits only, and a retired audience or trait (confirmed but gone from the definitions) sends
nothing. A destination that holds nothing yet gets every current value without a comparison.
Each change also names the outbox message it can reuse: the in-doubt message with the latest
seq if it carries the wanted value, else a pending or rejected message that carries it.
The result is the temporary table ``ctsync_changes``; besides moving changed keys, nothing else
is written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from ctsync.engage.rekey import move_changed_keys
from ctsync.engage.state import OUTBOX, STATE, Dialect
from ctsync.errors import CtsyncError

ENGAGE_SCHEMA = "engage"
INPUT_TABLES = ("engage_audiences", "engage_audience_memberships", "engage_traits", "engage_computed_traits")
CHANGES = "ctsync_changes"
"""The temporary table the diff leaves for the outbox step (one row per change)."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class DiffCounts:
    entered: int = 0
    exited: int = 0
    traits_changed: int = 0
    reused: int = 0
    """Changes that reuse an existing outbox message (same messageId) instead of a new one."""
    moved: int = 0
    """Keys whose person now goes by another key (signed in, stitched): their state moved along."""
    retired_audiences: list[str] = field(default_factory=list)
    retired_traits: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return self.entered + self.exited + self.traits_changed


def check_inputs(conn: sa.Connection, engage_schema: str = ENGAGE_SCHEMA) -> None:
    """CtsyncError naming the missing input tables, if any."""
    schema = _identifier(engage_schema)
    query = sa.text(
        "select table_name from information_schema.tables where table_schema = :schema and table_name in ("
        + ", ".join(f"'{name}'" for name in INPUT_TABLES)
        + ")"
    )
    present = {str(row[0]) for row in conn.execute(query, {"schema": schema}).all()}
    missing = sorted(set(INPUT_TABLES) - present)
    if missing:
        raise CtsyncError(
            f"the warehouse has no {', '.join(f'{schema}.{name}' for name in missing)}: run `dbt build` "
            "first (it builds the audiences and computed traits that sync reads)"
        )


EMAILS_TABLE = "engage_user_emails"
"""Optional input: one row per user_id with the email Identify calls carry in ``traits.email``."""


def emails_relation(conn: sa.Connection, engage_schema: str = ENGAGE_SCHEMA) -> str | None:
    """``<schema>.engage_user_emails`` when it exists with user_id and email columns, else None."""
    schema = _identifier(engage_schema)
    found = {
        str(row[0])
        for row in conn.execute(
            sa.text(
                "select column_name from information_schema.columns where table_schema = :schema "
                "and table_name = :table and column_name in ('user_id', 'email')"
            ),
            {"schema": schema, "table": EMAILS_TABLE},
        )
    }
    return f"{schema}.{EMAILS_TABLE}" if found == {"user_id", "email"} else None


def compute_changes(
    conn: sa.Connection, dialect: Dialect, destination: str, engage_schema: str = ENGAGE_SCHEMA
) -> DiffCounts:
    """Fill the temporary table ``ctsync_changes`` with this destination's changes; count them.

    Keys whose person now goes by another key are moved first (:mod:`ctsync.engage.rekey`).
    """
    for statement in dialect.diff_settings():
        conn.execute(sa.text(statement))
    conn.execute(sa.text(f"drop table if exists {CHANGES}"))
    flagged = _has_column(conn, engage_schema)
    moved = move_changed_keys(conn, dialect, destination, current_ctes(engage_schema, traits_flag_anonymous=flagged))
    first_sync = not moved and _holds_nothing(conn, destination)
    in_doubt = not first_sync and _has_unanswered(conn, destination)
    query = changes_query(
        dialect, engage_schema, traits_flag_anonymous=flagged, first_sync=first_sync, in_doubt=in_doubt
    )
    conn.execute(sa.text(f"create temporary table {CHANGES} as {query}"), {"destination": destination})
    for statement in dialect.analyze(CHANGES):
        conn.execute(sa.text(statement))
    attach_reusable_messages(conn, destination)
    counts = DiffCounts(moved=moved)
    for row in conn.execute(
        sa.text(f"select change, count(*) as total, count(reuse_message_id) as reused from {CHANGES} group by change")
    ):
        field_name = {"entered": "entered", "exited": "exited", "changed": "traits_changed"}[str(row.change)]
        setattr(counts, field_name, int(row.total))
        counts.reused += int(row.reused)
    counts.retired_audiences, counts.retired_traits = retired_computations(conn, destination, engage_schema)
    return counts


def retired_computations(
    conn: sa.Connection, destination: str, engage_schema: str = ENGAGE_SCHEMA
) -> tuple[list[str], list[str]]:
    """Audience and trait keys the destination has confirmed values for but that are no longer defined."""
    schema = _identifier(engage_schema)
    rows = conn.execute(
        sa.text(
            f"""
            select distinct s.computation_class, s.computation_key
            from {STATE} as s
            where s.destination = :destination
              and not (
                  (s.computation_class = 'audience'
                   and s.computation_key in (select audience_key from {schema}.engage_audiences
                                             where audience_key is not null))
                  or (s.computation_class = 'trait'
                      and s.computation_key in (select trait_key from {schema}.engage_traits
                                                where trait_key is not null))
              )
            order by 1, 2
            """
        ),
        {"destination": destination},
    ).all()
    audiences = [str(key) for cls, key in rows if cls == "audience"]
    traits = [str(key) for cls, key in rows if cls == "trait"]
    return audiences, traits


def _holds_nothing(conn: sa.Connection, destination: str) -> bool:
    """Whether the destination has no confirmed value and no message at all (its first sync)."""
    found: object = conn.execute(
        sa.text(
            f"select exists (select 1 from {STATE} where destination = :destination)"
            f" or exists (select 1 from {OUTBOX} where destination = :destination)"
        ),
        {"destination": destination},
    ).scalar_one()
    return found is not True


def _has_unanswered(conn: sa.Connection, destination: str) -> bool:
    """Whether some message of the destination may have arrived although nothing answered it."""
    found: object = conn.execute(
        sa.text(
            f"select exists (select 1 from {OUTBOX} where destination = :destination"
            " and status in ('pending', 'rejected', 'superseded') and unanswered > 0)"
        ),
        {"destination": destination},
    ).scalar_one()
    return found is True


def _has_column(conn: sa.Connection, engage_schema: str) -> bool:
    """Whether ``engage_traits`` says per trait if anonymous-only people may have it."""
    found: int = conn.execute(
        sa.text(
            "select count(*) from information_schema.columns where table_schema = :schema "
            "and table_name = 'engage_traits' and column_name = 'include_anonymous'"
        ),
        {"schema": _identifier(engage_schema)},
    ).scalar_one()
    return bool(found)


def current_ctes(engage_schema: str = ENGAGE_SCHEMA, *, traits_flag_anonymous: bool = False) -> str:
    """CTEs (without ``with``) naming what the engage tables say now.

    ``audience_definitions`` and ``trait_definitions`` (key, include_anonymous), ``definitions``
    (class, key), ``current_rows``: one row per engage row that counts (class, key, user_id,
    anonymous_id, value as JSON text), duplicates and all, and ``anonymous_rows``: those of them
    without a user_id.
    """
    e = _identifier(engage_schema)
    trait_anonymous = "bool_or(coalesce(include_anonymous, false))" if traits_flag_anonymous else "true"
    return f"""
    audience_definitions as (
        select audience_key as computation_key, bool_or(coalesce(include_anonymous, false)) as include_anonymous
        from {e}.engage_audiences
        where audience_key is not null
        group by audience_key
    ),
    trait_definitions as (
        select trait_key as computation_key, {trait_anonymous} as include_anonymous
        from {e}.engage_traits
        where trait_key is not null
        group by trait_key
    ),
    definitions as (
        select 'audience' as computation_class, computation_key from audience_definitions
        union all
        select 'trait' as computation_class, computation_key from trait_definitions
    ),
    current_rows as ({_engage_rows(e, "user_id is not null or (include_anonymous and anonymous_id is not null)")}
    ),
    anonymous_rows as ({_engage_rows(e, "include_anonymous and user_id is null and anonymous_id is not null")}
    )"""


def _engage_rows(e: str, condition: str) -> str:
    """The audience memberships and trait values of schema ``e`` that meet ``condition``.

    ``condition`` may use user_id, anonymous_id (empty strings are NULL) and include_anonymous (of
    the definition). Columns: computation_class, computation_key, user_id, anonymous_id, value.
    """
    return f"""
        select computation_class, computation_key, user_id, anonymous_id, value
        from (
            select 'audience' as computation_class, m.audience_key as computation_key, m.user_id, m.anonymous_id,
                   'true' as value, a.include_anonymous
            from (
                select audience_key, nullif(user_id, '') as user_id, nullif(anonymous_id, '') as anonymous_id
                from {e}.engage_audience_memberships
                where is_member
            ) as m
            inner join audience_definitions as a on a.computation_key = m.audience_key
        ) as audience_rows
        where {condition}
        union all
        select computation_class, computation_key, user_id, anonymous_id, value
        from (
            select 'trait' as computation_class, t.trait_key as computation_key, t.user_id, t.anonymous_id, t.value,
                   d.include_anonymous
            from (
                select trait_key, nullif(user_id, '') as user_id, nullif(anonymous_id, '') as anonymous_id, value
                from {e}.engage_computed_traits
                where value is not null and value <> 'null'
            ) as t
            inner join trait_definitions as d on d.computation_key = t.trait_key
        ) as trait_rows
        where {condition}"""


def changes_query(
    dialect: Dialect,
    engage_schema: str = ENGAGE_SCHEMA,
    *,
    traits_flag_anonymous: bool = False,
    first_sync: bool = False,
    in_doubt: bool = True,
) -> str:
    """SELECT of the changes for destination ``:destination`` (see the module docstring).

    Anonymous-only people count for a trait when ``engage_traits.include_anonymous`` says so;
    without that column, the rows dbt published for them are taken as they are. ``first_sync``
    (the destination has no confirmed value and no message) makes every current value a change;
    ``in_doubt=False`` (no message of the destination is unanswered) leaves the outbox out.
    ``confirmed_value`` is what the destination confirmed before (NULL: nothing).
    """
    ctes = current_ctes(engage_schema, traits_flag_anonymous=traits_flag_anonymous)
    middle = _first_sync_ctes(dialect) if first_sync else _comparison_ctes(dialect, in_doubt=in_doubt)
    order = _send_order(dialect, "w")
    return f"""
    with
    {ctes},
    {middle}
    select
        w.computation_class,
        w.computation_key,
        w.id_type,
        w.person_id,
        w.user_id,
        w.anonymous_id,
        w.value,
        w.confirmed_value,
        case
            when w.computation_class = 'trait' then 'changed'
            when w.value = 'true' then 'entered'
            else 'exited'
        end as change,
        w.latest_seq,
        cast(null as varchar) as reuse_message_id,
        cast(null as bigint) as reuse_seq,
        (select coalesce(max(seq), 0) from {OUTBOX} where destination = :destination)
            + row_number() over (order by {order}) as new_seq
    from changed as w
    """


_ABSENT = "case when {0}.computation_class = 'audience' then 'false' else 'null' end"
"""What a value that is not there means: ``false`` for an audience, ``null`` for a trait."""

_KEY = "computation_class, computation_key, id_type, person_id"


def _keyed_rows(dialect: Dialect) -> str:
    """``current_keyed``: ``current_rows`` with the key that names the person (duplicates kept)."""
    b = dialect.bytewise
    return f"""current_keyed as not materialized (
        select
            {b("computation_class")} as computation_class,
            {b("computation_key")} as computation_key,
            {b("case when user_id is not null then 'user_id' else 'anonymous_id' end")} as id_type,
            {b("coalesce(user_id, anonymous_id)")} as person_id,
            anonymous_id,
            value
        from current_rows
    )"""


def _send_order(dialect: Dialect, alias: str) -> str:
    """The order new messages are numbered in: by person, then computation.

    Confirming a request's messages then writes the state's primary key at one place per
    computation, in order, rather than all over it; and the most varied column first lets
    PostgreSQL sort on abbreviated keys.
    """
    columns = ("person_id", "computation_key", "computation_class", "id_type")
    return ", ".join(dialect.bytewise(f"{alias}.{column}") for column in columns)


def _folded(dialect: Dialect, rows: str, where: str = "") -> str:
    """SELECT folding ``rows`` (current_keyed columns) to one row per key: the largest anonymous_id
    and value of duplicates; user_id is the person_id of a user key."""
    b = dialect.bytewise
    return f"""
        select r.computation_class, r.computation_key, r.id_type, r.person_id,
               case when r.id_type = 'user_id' then r.person_id end as user_id,
               max({b("r.anonymous_id")}) as anonymous_id,
               max({b("r.value")}) as value
        from {rows}
        {where}
        group by r.person_id, r.computation_key, r.computation_class, r.id_type"""


def _first_sync_ctes(dialect: Dialect) -> str:
    """``changed`` when the destination holds nothing: every current value."""
    rows = dialect.presorted("current_keyed", _send_order(dialect, "current_keyed"))
    return f"""{_keyed_rows(dialect)},
    changed as (
        select v.*, cast(null as varchar) as confirmed_value, cast(null as bigint) as latest_seq
        from ({_folded(dialect, f"{rows} as r")}) as v
    )"""


def _comparison_ctes(dialect: Dialect, *, in_doubt: bool) -> str:
    """``changed``: the keys whose wanted value differs from what the destination holds or may hold.

    Engage rows are compared one by one (no folding of duplicates over every row); only the keys
    where some row differs are folded. That is exact: every row of an audience key carries
    ``true`` and the same baseline, so either all of them differ or none; a trait key's rows may
    carry different values, so its differing keys are folded again over all of its rows (the
    folded value is one of the rows' values). Messages in doubt are joined in only when there
    are any (``in_doubt``): usually every message was answered, and the comparison is then just
    engage rows against confirmed state.
    """
    b = dialect.bytewise
    differs = (
        "{0}.value <> {0}.baseline"
        " or ({0}.min_value is not null and ({0}.min_value <> {0}.value or {0}.max_value <> {0}.value))"
    )
    where_trait = (
        "where r.computation_class = 'trait'"
        f" and exists (select 1 from differing as k where k.computation_class = 'trait' and {_same_key('k', 'r')})"
    )
    if in_doubt:
        doubt_ctes = f"""
    in_doubt as ({IN_DOUBT}),
    in_doubt_summary as (
        select {_KEY},
               min(value) as min_value,
               max(value) as max_value,
               max(seq) as latest_seq,
               max(anonymous_id) as anonymous_id
        from in_doubt
        group by {_KEY}
    ),"""
        doubt_columns = """d.min_value,
            d.max_value,
            d.latest_seq"""
        doubt_join = """
        full outer join in_doubt_summary as d
            on d.computation_class = coalesce(c.computation_class, s.computation_class)
            and d.computation_key = coalesce(c.computation_key, s.computation_key)
            and d.id_type = coalesce(c.id_type, s.id_type)
            and d.person_id = coalesce(c.person_id, s.person_id)"""
        doubt = "d."
    else:
        doubt_ctes = doubt_join = ""
        doubt_columns = """cast(null as varchar) as min_value,
            cast(null as varchar) as max_value,
            cast(null as bigint) as latest_seq"""
        doubt = "s."
    keys = ",\n            ".join(
        f"coalesce(c.{column}, s.{column}{', d.' + column if in_doubt else ''}) as {column}"
        for column in _KEY.split(", ")
    )
    return f"""{_keyed_rows(dialect)},
    confirmed as (
        select {_KEY}, anonymous_id, value, confirmed_seq
        from {STATE}
        where destination = :destination
    ),{doubt_ctes}
    compared as (
        select
            {keys},
            c.value as current_value,
            c.anonymous_id as current_anonymous_id,
            s.value as confirmed_value,
            coalesce(s.anonymous_id, {doubt}anonymous_id) as known_anonymous_id,
            {doubt_columns}
        from current_keyed as c
        full outer join confirmed as s
            on s.computation_class = c.computation_class and s.computation_key = c.computation_key
            and s.id_type = c.id_type and s.person_id = c.person_id{doubt_join}
    ),
    differing as (
        select x.computation_class, x.computation_key, x.id_type, x.person_id,
               max(x.confirmed_value) as confirmed_value, max(x.known_anonymous_id) as known_anonymous_id,
               max(x.min_value) as min_value, max(x.max_value) as max_value, max(x.latest_seq) as latest_seq,
               count(x.current_value) as current_rows,
               max({b("x.current_value")}) as current_value,
               max({b("x.current_anonymous_id")}) as current_anonymous_id
        from (
            select x.*, coalesce(x.current_value, {_ABSENT.format("x")}) as value,
                   coalesce(x.confirmed_value, {_ABSENT.format("x")}) as baseline
            from compared as x
        ) as x
        inner join definitions as df
            on df.computation_class = x.computation_class and df.computation_key = x.computation_key
        where {differs.format("x")}
        group by x.computation_class, x.computation_key, x.id_type, x.person_id
    ),
    trait_values as ({_folded(dialect, "current_keyed as r", where_trait)}
    ),
    wanted as (
        select
            k.computation_class,
            k.computation_key,
            k.id_type,
            k.person_id,
            case when k.id_type = 'user_id' then k.person_id end as user_id,
            case
                when v.person_id is not null then v.anonymous_id
                when k.computation_class = 'audience' and k.current_rows > 0 then k.current_anonymous_id
                when k.id_type = 'anonymous_id' then k.person_id
                else k.known_anonymous_id
            end as anonymous_id,
            coalesce(
                case when k.computation_class = 'audience' then k.current_value else v.value end,
                {_ABSENT.format("k")}
            ) as value,
            coalesce(k.confirmed_value, {_ABSENT.format("k")}) as baseline,
            k.confirmed_value,
            k.min_value,
            k.max_value,
            k.latest_seq
        from differing as k
        left join trait_values as v on {_same_key("v", "k")}
    ),
    changed as (
        select w.*
        from wanted as w
        where {differs.format("w")}
    )"""


def _same_key(left: str, right: str) -> str:
    return " and ".join(f"{left}.{column} = {right}.{column}" for column in _KEY.split(", "))


IN_DOUBT = f"""
        select o.computation_class, o.computation_key, o.id_type, o.person_id,
               o.user_id, o.anonymous_id, o.value, o.seq, o.message_id, o.status
        from {OUTBOX} as o
        left join {STATE} as s
            on s.destination = o.destination
            and s.computation_class = o.computation_class and s.computation_key = o.computation_key
            and s.id_type = o.id_type and s.person_id = o.person_id
        where o.destination = :destination
          and o.status in ('pending', 'rejected', 'superseded')
          and o.unanswered > 0
          and (s.confirmed_seq is null or o.seq > s.confirmed_seq)
    """
"""Messages of destination ``:destination`` that may have arrived although nothing confirmed them."""

_REUSABLE = "o.status in ('pending', 'rejected') or (o.status = 'superseded' and o.unanswered > 0)"


def attach_reusable_messages(conn: sa.Connection, destination: str) -> None:
    """Name, for each change, the outbox message it can send again (same messageId), if any.

    The in-doubt message with the latest seq if it carries the wanted value, else a pending or
    rejected message that carries it (the newest). Skipped when the destination has none.
    """
    candidates = f"select 1 from {OUTBOX} as o where o.destination = :destination and ({_REUSABLE})"
    params = {"destination": destination}
    if conn.execute(sa.text(f"select exists ({candidates})"), params).scalar_one() is not True:
        return
    key = "computation_class, computation_key, id_type, person_id"
    conn.execute(
        sa.text(
            f"""
            update {CHANGES} as c
            set reuse_message_id = u.message_id, reuse_seq = u.seq
            from (
                with
                in_doubt as ({IN_DOUBT}),
                reusable as (
                    select {key}, value, message_id, seq
                    from {OUTBOX} as o
                    where o.destination = :destination and o.status in ('pending', 'rejected')
                    union all
                    select {key}, value, message_id, seq
                    from in_doubt
                    where status = 'superseded'
                )
                select
                    r.computation_class, r.computation_key, r.id_type, r.person_id, r.message_id, r.seq,
                    row_number() over (
                        partition by r.computation_class, r.computation_key, r.id_type, r.person_id
                        order by r.seq desc
                    ) as position
                from reusable as r
                inner join {CHANGES} as w
                    on w.computation_class = r.computation_class and w.computation_key = r.computation_key
                    and w.id_type = r.id_type and w.person_id = r.person_id and w.value = r.value
                where w.latest_seq is null or r.seq >= w.latest_seq
            ) as u
            where u.position = 1
              and u.computation_class = c.computation_class and u.computation_key = c.computation_key
              and u.id_type = c.id_type and u.person_id = c.person_id
            """
        ),
        params,
    )


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise CtsyncError(f"the engage schema must be a plain SQL name (letters, digits, _), not {name!r}")
    return name
