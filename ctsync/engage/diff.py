"""The diff: what a destination should be told, computed in SQL against what it CONFIRMED.

Inputs (built by dbt in schema ``engage``): ``engage_audiences``, ``engage_audience_memberships``,
``engage_traits`` and ``engage_computed_traits``. A person is named by ``user_id`` when present,
else by ``anonymous_id``; anonymous-only people count only for audiences with
``include_anonymous`` (checked here even though dbt filters them too).

Computed traits follow ``engage_traits.include_anonymous`` when that column exists; without it,
the anonymous-only rows dbt publishes are taken as they are (dbt filters them per trait).

For every (computation, person) the wanted value is ``true`` for a current member and
``false`` otherwise (audiences), or the current value and ``null`` when it is gone (traits).
A change is sent when the wanted value differs from

* the confirmed value (``sync_state``; absent means ``false`` / ``null``: nothing was ever said), or
* any value that may have reached the destination without being confirmed: messages after the
  confirmed one with a hand-off that got no definitive answer ("in doubt": a timeout, a
  failure after retries, or a run killed after the request but before its commit).

So the first sync of an audience sends every member ``true``, later syncs send entries and
exits only, and a retired audience or trait (confirmed but gone from the definitions) sends
nothing. Each change also names the outbox message it can reuse: the in-doubt message with the
latest seq if it carries the wanted value, else a pending or rejected message that carries it.
The result is the temporary table ``ctsync_changes``; nothing else is written here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

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


def compute_changes(
    conn: sa.Connection, dialect: Dialect, destination: str, engage_schema: str = ENGAGE_SCHEMA
) -> DiffCounts:
    """Fill the temporary table ``ctsync_changes`` with this destination's changes; count them."""
    conn.execute(sa.text(f"drop table if exists {CHANGES}"))
    query = changes_query(dialect, engage_schema, traits_flag_anonymous=_has_column(conn, engage_schema))
    conn.execute(sa.text(f"create temporary table {CHANGES} as {query}"), {"destination": destination})
    counts = DiffCounts()
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


def changes_query(dialect: Dialect, engage_schema: str = ENGAGE_SCHEMA, *, traits_flag_anonymous: bool = False) -> str:
    """SELECT of the changes for destination ``:destination`` (see the module docstring).

    Anonymous-only people count for a trait when ``engage_traits.include_anonymous`` says so;
    without that column, the rows dbt published for them are taken as they are.
    """
    e = _identifier(engage_schema)
    person = "computation_class, computation_key, id_type, person_id"
    trait_anonymous = "bool_or(coalesce(include_anonymous, false))" if traits_flag_anonymous else "true"
    return f"""
    with
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
    memberships as (
        select
            audience_key,
            nullif(user_id, '') as user_id,
            nullif(anonymous_id, '') as anonymous_id
        from {e}.engage_audience_memberships
        where is_member
    ),
    audience_members as (
        select
            'audience' as computation_class,
            m.audience_key as computation_key,
            case when m.user_id is not null then 'user_id' else 'anonymous_id' end as id_type,
            coalesce(m.user_id, m.anonymous_id) as person_id,
            max(m.user_id) as user_id,
            max(m.anonymous_id) as anonymous_id,
            'true' as value
        from memberships as m
        inner join audience_definitions as a on a.computation_key = m.audience_key
        where m.user_id is not null or (a.include_anonymous and m.anonymous_id is not null)
        group by
            m.audience_key,
            case when m.user_id is not null then 'user_id' else 'anonymous_id' end,
            coalesce(m.user_id, m.anonymous_id)
    ),
    trait_values as (
        select
            'trait' as computation_class,
            t.trait_key as computation_key,
            case when t.user_id is not null then 'user_id' else 'anonymous_id' end as id_type,
            coalesce(t.user_id, t.anonymous_id) as person_id,
            max(t.user_id) as user_id,
            max(t.anonymous_id) as anonymous_id,
            max(t.value) as value
        from (
            select trait_key, nullif(user_id, '') as user_id, nullif(anonymous_id, '') as anonymous_id, value
            from {e}.engage_computed_traits
            where value is not null and value <> 'null'
        ) as t
        inner join trait_definitions as d on d.computation_key = t.trait_key
        where t.user_id is not null or (d.include_anonymous and t.anonymous_id is not null)
        group by
            t.trait_key,
            case when t.user_id is not null then 'user_id' else 'anonymous_id' end,
            coalesce(t.user_id, t.anonymous_id)
    ),
    current_values as (
        select * from audience_members
        union all
        select * from trait_values
    ),
    confirmed as (
        select {person}, anonymous_id, value, confirmed_seq
        from {STATE}
        where destination = :destination
    ),
    in_doubt as (
        select o.computation_class, o.computation_key, o.id_type, o.person_id,
               o.user_id, o.anonymous_id, o.value, o.seq, o.message_id, o.status
        from {OUTBOX} as o
        left join confirmed as s
            on s.computation_class = o.computation_class and s.computation_key = o.computation_key
            and s.id_type = o.id_type and s.person_id = o.person_id
        where o.destination = :destination
          and o.status in ('pending', 'rejected', 'superseded')
          and o.unanswered > 0
          and (s.confirmed_seq is null or o.seq > s.confirmed_seq)
    ),
    in_doubt_summary as (
        select {person},
               min(value) as min_value,
               max(value) as max_value,
               max(seq) as latest_seq,
               max(anonymous_id) as anonymous_id
        from in_doubt
        group by {person}
    ),
    compared as (
        select
            coalesce(c.computation_class, s.computation_class, d.computation_class) as computation_class,
            coalesce(c.computation_key, s.computation_key, d.computation_key) as computation_key,
            coalesce(c.id_type, s.id_type, d.id_type) as id_type,
            coalesce(c.person_id, s.person_id, d.person_id) as person_id,
            c.person_id is not null as is_current,
            c.user_id as current_user_id,
            c.anonymous_id as current_anonymous_id,
            coalesce(s.anonymous_id, d.anonymous_id) as known_anonymous_id,
            c.value as current_value,
            s.value as confirmed_value,
            d.min_value,
            d.max_value,
            d.latest_seq
        from current_values as c
        full outer join confirmed as s
            on s.computation_class = c.computation_class and s.computation_key = c.computation_key
            and s.id_type = c.id_type and s.person_id = c.person_id
        full outer join in_doubt_summary as d
            on d.computation_class = coalesce(c.computation_class, s.computation_class)
            and d.computation_key = coalesce(c.computation_key, s.computation_key)
            and d.id_type = coalesce(c.id_type, s.id_type)
            and d.person_id = coalesce(c.person_id, s.person_id)
    ),
    wanted as (
        select
            x.computation_class,
            x.computation_key,
            x.id_type,
            x.person_id,
            case
                when x.is_current then x.current_user_id
                when x.id_type = 'user_id' then x.person_id
            end as user_id,
            case
                when x.is_current then x.current_anonymous_id
                when x.id_type = 'anonymous_id' then x.person_id
                else x.known_anonymous_id
            end as anonymous_id,
            coalesce(x.current_value, case when x.computation_class = 'audience' then 'false' else 'null' end)
                as value,
            coalesce(x.confirmed_value, case when x.computation_class = 'audience' then 'false' else 'null' end)
                as baseline,
            x.min_value,
            x.max_value,
            x.latest_seq
        from compared as x
        inner join definitions as df
            on df.computation_class = x.computation_class and df.computation_key = x.computation_key
    ),
    changed as (
        select *
        from wanted
        where value <> baseline
           or (min_value is not null and (min_value <> value or max_value <> value))
    ),
    reusable as (
        select o.computation_class, o.computation_key, o.id_type, o.person_id, o.value, o.message_id, o.seq
        from {OUTBOX} as o
        where o.destination = :destination and o.status in ('pending', 'rejected')
        union all
        select computation_class, computation_key, id_type, person_id, value, message_id, seq
        from in_doubt
        where status = 'superseded'
    ),
    reuse as (
        select
            r.computation_class, r.computation_key, r.id_type, r.person_id, r.message_id,
            row_number() over (
                partition by r.computation_class, r.computation_key, r.id_type, r.person_id
                order by r.seq desc
            ) as position
        from reusable as r
        inner join changed as w
            on w.computation_class = r.computation_class and w.computation_key = r.computation_key
            and w.id_type = r.id_type and w.person_id = r.person_id and w.value = r.value
        where w.latest_seq is null or r.seq >= w.latest_seq
    )
    select
        w.computation_class,
        w.computation_key,
        w.id_type,
        w.person_id,
        w.user_id,
        w.anonymous_id,
        w.value,
        case
            when w.computation_class = 'trait' then 'changed'
            when w.value = 'true' then 'entered'
            else 'exited'
        end as change,
        u.message_id as reuse_message_id,
        {dialect.new_message_id()} as new_message_id,
        (select coalesce(max(seq), 0) from {OUTBOX} where destination = :destination)
            + row_number() over (
                order by w.value, w.computation_class, w.computation_key, w.id_type, w.person_id
            ) as new_seq
    from changed as w
    left join reuse as u
        on u.position = 1
        and u.computation_class = w.computation_class and u.computation_key = w.computation_key
        and u.id_type = w.id_type and u.person_id = w.person_id
    """


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise CtsyncError(f"the engage schema must be a plain SQL name (letters, digits, _), not {name!r}")
    return name
