"""When a person's key changes, what the destination confirmed moves with them.

The diff names a person by ``user_id`` when known, else by ``anonymous_id``. A visitor who signs
in (``anonymous_id`` A, now ``user_id`` U with A as their latest anonymous id) therefore turns up
under a new key, yet at the destination both keys address one profile: CleverTap upserts the
record of U with ``objectId`` A, Segment merges ``userId`` U with ``anonymousId`` A. Diffing the
two keys apart would tell that profile ``false`` (or ``null``) under A and ``true`` under U in
the same run, and the order the requests land in would decide what it ends as.

So before the diff, a key the destination may hold a value under (confirmed in ``sync_state``
or possibly delivered: an unanswered message) that no engage row names any more is linked to
the key that now names the same person, for the same audience or trait:

* anonymous key A -> user key U when an engage row of that computation pairs U with A;
* user key U -> anonymous key A when U was confirmed (or sent) with anonymousId A and A is
  now an anonymous-only row of that computation.

Linked keys move: the old key's confirmed row becomes the new key's (the newest confirmation
wins when both have one) and its outbox messages are filed under the new key, so the diff
compares the new key with what that profile was told. Nothing is sent for the old key: the
new key gets an entry only if the profile does not already hold the value, an exit only when
the person really left. A key with no such link (the person left, or vanished from the
engage tables) is diffed as before and gets its exit.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from ctsync.engage.state import OUTBOX, STATE, Dialect

logger = logging.getLogger(__name__)

MOVES = "ctsync_moves"
"""Temporary table: one row per (computation, old key) with the key it moves to."""

_KEY = "computation_class, computation_key"
_POSSIBLY_HELD = "status in ('pending', 'rejected', 'superseded') and unanswered > 0"
_MOVE_COLUMNS = "computation_class, computation_key, old_id_type, old_person_id, new_id_type, new_person_id"


def _held(id_type: str, extra: str = "") -> str:
    """Keys of ``id_type`` the destination may hold a value under: confirmed, or possibly delivered."""
    return f"""
        select {_KEY}, person_id, anonymous_id from {STATE}
        where destination = :destination and id_type = '{id_type}'{extra}
        union
        select {_KEY}, person_id, anonymous_id from {OUTBOX}
        where destination = :destination and id_type = '{id_type}'{extra} and {_POSSIBLY_HELD}
    """


def identified_query(current_ctes: str) -> str:
    """Anonymous keys the destination may hold whose anonymous id an identified engage row now carries."""
    return f"""
    with
    {current_ctes},
    held as ({_held("anonymous_id")})
    select h.computation_class, h.computation_key, 'anonymous_id' as old_id_type, h.person_id as old_person_id,
           'user_id' as new_id_type, min(c.user_id) as new_person_id
    from held as h
    inner join current_rows as c
        on c.computation_class = h.computation_class and c.computation_key = h.computation_key
        and c.anonymous_id = h.person_id and c.user_id is not null
    where not exists (
        select 1 from anonymous_rows as n
        where n.computation_class = h.computation_class and n.computation_key = h.computation_key
          and n.anonymous_id = h.person_id
    )
    group by h.computation_class, h.computation_key, h.person_id
    """


def unidentified_query(current_ctes: str) -> str:
    """Identified keys the destination may hold (sent with an anonymousId) that no engage row names,
    whose anonymous id an anonymous-only engage row now carries."""
    return f"""
    with
    {current_ctes},
    candidates as (
        select distinct h.computation_class, h.computation_key, h.person_id as user_id, n.anonymous_id
        from anonymous_rows as n
        inner join ({_held("user_id", " and anonymous_id is not null")}) as h
            on h.computation_class = n.computation_class and h.computation_key = n.computation_key
            and h.anonymous_id = n.anonymous_id
    ),
    still_current as (
        select distinct k.computation_class, k.computation_key, k.user_id
        from candidates as k
        inner join current_rows as c
            on c.computation_class = k.computation_class and c.computation_key = k.computation_key
            and c.user_id = k.user_id
    )
    select k.computation_class, k.computation_key, 'user_id' as old_id_type, k.user_id as old_person_id,
           'anonymous_id' as new_id_type, min(k.anonymous_id) as new_person_id
    from candidates as k
    where not exists (
        select 1 from still_current as s
        where s.computation_class = k.computation_class and s.computation_key = k.computation_key
          and s.user_id = k.user_id
    )
    group by k.computation_class, k.computation_key, k.user_id
    """


def move_changed_keys(conn: sa.Connection, dialect: Dialect, destination: str, current_ctes: str) -> int:
    """Move the confirmed state and messages of keys whose person now goes by another key.

    Runs inside the caller's transaction, before the diff; returns how many keys moved. Each
    direction is looked at only when it can apply (the destination holds anonymous keys; some
    engage rows are anonymous-only), so people who never were anonymous cost two quick checks.
    """
    params = {"destination": destination}
    queries: list[str] = []
    if _any(conn, _possibly_held_anonymous(), params):
        queries.append(identified_query(current_ctes))
    anonymous_definitions = (
        "select 1 from audience_definitions where include_anonymous"
        " union all select 1 from trait_definitions where include_anonymous"
    )
    if _any(conn, f"with {current_ctes} {anonymous_definitions}", params) and _any(
        conn, f"with {current_ctes} select 1 from anonymous_rows", params
    ):
        queries.append(unidentified_query(current_ctes))
    if not queries:
        return 0
    conn.execute(sa.text(f"drop table if exists {MOVES}"))
    conn.execute(sa.text(f"create temporary table {MOVES} as {queries[0]}"), params)
    for query in queries[1:]:
        conn.execute(sa.text(f"insert into {MOVES} ({_MOVE_COLUMNS}) {query}"), params)
    for statement in dialect.analyze(MOVES):
        conn.execute(sa.text(statement))
    moved = int(conn.execute(sa.text(f"select count(*) from {MOVES}")).scalar_one())
    if moved:
        conn.execute(sa.text(dialect.upsert_state(STATE, _moved_state(), confirmed_at="o.confirmed_at")), params)
        conn.execute(sa.text(_delete_old_state()), params)
        conn.execute(sa.text(_refile_messages()), params)
        logger.info(
            "%s: %d key(s) changed (signed in or re-stitched); their confirmed state moved along", destination, moved
        )
    conn.execute(sa.text(f"drop table if exists {MOVES}"))
    return moved


def _possibly_held_anonymous() -> str:
    """Whether the destination may hold a value under some anonymous key (each table on its own,
    so each check stops at the first row, through the indexes of a server database)."""
    return f"""
        select 1 where exists (select 1 from {STATE} where destination = :destination and id_type = 'anonymous_id')
        or exists (
            select 1 from {OUTBOX}
            where destination = :destination and id_type = 'anonymous_id' and {_POSSIBLY_HELD}
        )
    """


def _any(conn: sa.Connection, query: str, params: dict[str, str]) -> bool:
    return conn.execute(sa.text(f"select exists ({query})"), params).scalar_one() is True


def _matches_old_key(alias: str) -> str:
    return (
        f"m.computation_class = {alias}.computation_class and m.computation_key = {alias}.computation_key"
        f" and m.old_id_type = {alias}.id_type and m.old_person_id = {alias}.person_id"
    )


def _moved_state() -> str:
    """The old keys' confirmed rows under their new keys, the newest one per new key."""
    return f"""
        select destination, computation_class, computation_key, id_type, person_id, anonymous_id, value,
               message_id, seq, confirmed_at
        from (
            select s.destination, s.computation_class, s.computation_key, m.new_id_type as id_type,
                   m.new_person_id as person_id, s.anonymous_id, s.value, s.message_id,
                   s.confirmed_seq as seq, s.confirmed_at,
                   row_number() over (
                       partition by s.computation_class, s.computation_key, m.new_id_type, m.new_person_id
                       order by s.confirmed_seq desc
                   ) as position
            from {STATE} as s
            inner join {MOVES} as m on {_matches_old_key("s")}
            where s.destination = :destination
        ) as newest
        where position = 1
    """


def _delete_old_state() -> str:
    return f"""
        delete from {STATE} as s
        where s.destination = :destination
          and exists (select 1 from {MOVES} as m where {_matches_old_key("s")})
    """


def _refile_messages() -> str:
    return f"""
        update {OUTBOX} as o
        set id_type = m.new_id_type, person_id = m.new_person_id
        from {MOVES} as m
        where o.destination = :destination and {_matches_old_key("o")}
    """
