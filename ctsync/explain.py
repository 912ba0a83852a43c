"""``ctsync explain USER_ID``: for one person, each audience's and trait's current value in the
engage tables and the model that computed it, how their anonymous ids are stitched to them, and per
destination what was last sent (the outbox) and what it confirmed (``sync_state``).

The person is named by a user_id or an anonymous_id (a CleverTap ID). The identity models
(``int_people_resolved``, ``int_anonymous_ids_stitched``, found in whatever schema dbt built them
in) say who that is; without them the engage tables and the sync state are searched. Model
descriptions and files come from dbt's manifest (``target/manifest.json``) when there is one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ctsync.engage.diff import ENGAGE_SCHEMA, check_inputs
from ctsync.engage.state import OUTBOX, STATE, connect
from ctsync.errors import CtsyncError
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.state import STATE_SCHEMA, state_engine


@dataclass(frozen=True)
class StitchedId:
    """An anonymous id (a device in one source) and the user it is stitched to, if any."""

    source_relation: str
    anonymous_id: str
    user_id: str | None
    last_seen_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    """What one destination was last sent and confirmed for one audience or trait of the person."""

    destination: str
    confirmed_value: str | None = None
    confirmed_message_id: str | None = None
    confirmed_at: datetime | None = None
    sent_value: str | None = None
    sent_message_id: str | None = None
    sent_status: str | None = None
    """Outbox status of the last message: pending, sent, rejected or superseded."""
    sent_at: datetime | None = None
    problem: str | None = None
    """The last refusal or failure of that message (code: reason)."""


@dataclass
class ComputationExplained:
    computation_class: str
    computation_key: str
    name: str
    model_name: str
    value: str | None
    """JSON text: ``true``/``false`` for an audience, the trait's value or None."""
    computed_at: datetime | None
    anonymous_person: bool
    """The person has no user_id (an audience or trait without include_anonymous leaves them out)."""
    description: str | None = None
    model_path: str | None = None
    in_model: bool | None = None
    """The model's own table holds the person (None: not checked, the table was not found)."""
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def why(self) -> str:
        """The reason the value is what it is, in a sentence."""
        model = f"model {self.model_name}" + (f" ({self.model_path})" if self.model_path else "")
        said = f": {self.description}" if self.description else ""
        audience = self.computation_class == "audience"
        if self.value is not None and self.value != "false":
            return f"{model} {'selects them' if audience else 'computes this value for them'}{said}"
        if self.in_model and self.anonymous_person:
            return (
                f"{model} has them, but this {self.computation_class} leaves out people without a user_id "
                f"(include_anonymous is false){said}"
            )
        if self.in_model and not audience:
            return f"{model} gives them no value{said}"
        return f"{model} does not {'select them' if audience else 'have them'}{said}"


def next_value(computation: ComputationExplained, delivery: Delivery) -> str | None:
    """What the next sync would tell ``delivery``'s destination, if its confirmed value is not the current one."""
    absent = "false" if computation.computation_class == "audience" else "null"
    current = computation.value if computation.value is not None else absent
    confirmed = delivery.confirmed_value if delivery.confirmed_value is not None else absent
    return None if current == confirmed else current


@dataclass
class Explanation:
    asked: str
    user_id: str | None
    person_id: str
    """What the sync names the person by: the user_id, else the anonymous id."""
    found_by: str
    """How ``asked`` was recognised: ``user_id``, ``anonymous_id`` (stitched or not)."""
    stitched: list[StitchedId]
    identity_models: str | None
    """The schema holding the identity models, if any."""
    destinations: list[str]
    computations: list[ComputationExplained]


def explain_person(
    person: str,
    *,
    warehouse: str,
    destination: str | None = None,
    manifest: str | Path | None = None,
    engage_schema: str = ENGAGE_SCHEMA,
    wait_seconds: float = 5.0,
) -> Explanation:
    """Explain ``person`` (a user_id or an anonymous_id); CtsyncError when nobody has that id."""
    target = parse_warehouse(warehouse)
    if target.kind == "duckdb" and not Path(target.location).is_file():
        raise CtsyncError(f"no warehouse at {target.location}: load data and run `ctsync build` first")
    models = read_manifest(manifest)
    engine = state_engine(target)
    try:
        conn = connect(engine, wait_seconds=wait_seconds)
        try:
            with conn.begin():
                check_inputs(conn, engage_schema)
                return _Explainer(conn, engage_schema, models).explain(person.strip(), destination)
        finally:
            conn.close()
    finally:
        engine.dispose()


def read_manifest(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """dbt's model nodes by model name, from ``path``, else ``target/manifest.json`` of the dbt project."""
    if path is None:
        from ctsync.build import project_dir

        try:
            path = project_dir() / "target" / "manifest.json"
        except CtsyncError:
            return {}
        if not Path(path).is_file():
            return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CtsyncError(f"cannot read dbt's manifest {path}: {exc}") from None
    nodes = document.get("nodes", {}) if isinstance(document, dict) else {}
    return {
        str(node["name"]): node
        for node in nodes.values()
        if isinstance(node, dict) and node.get("resource_type") == "model" and "name" in node
    }


class _Explainer:
    def __init__(self, conn: sa.Connection, engage_schema: str, models: dict[str, dict[str, Any]]) -> None:
        self.conn = conn
        self.e = engage_schema
        self.models = models
        self.identity = _schema_of(conn, "int_anonymous_ids_stitched")

    def explain(self, asked: str, destination: str | None) -> Explanation:
        user_id, person_id, found_by = self._who(asked)
        stitched = self._stitched(person_id)
        keys = [("user_id", user_id)] if user_id else [("anonymous_id", person_id)]
        keys += [("anonymous_id", s.anonymous_id) for s in stitched if ("anonymous_id", s.anonymous_id) not in keys]
        destinations = self._destinations(destination)
        computations = self._audiences(user_id, person_id) + self._traits(user_id, person_id)
        deliveries = self._deliveries(keys, destinations)
        for computation in computations:
            computation.deliveries = [
                deliveries.get((name, computation.computation_class, computation.computation_key), Delivery(name))
                for name in destinations
            ]
        return Explanation(asked, user_id, person_id, found_by, stitched, self.identity, destinations, computations)

    # -- who ------------------------------------------------------------------------------

    def _who(self, asked: str) -> tuple[str | None, str, str]:
        """(user_id, person_id, how it was found)."""
        if self.identity is not None:
            if self._one(f"select 1 from {_q(self.identity)}.int_people_resolved where user_id = :id", asked):
                return asked, asked, "user_id"
            users = sorted(
                {
                    str(row.user_id)
                    for row in self._all(
                        f"select user_id from {_q(self.identity)}.int_anonymous_ids_stitched where anonymous_id = :id",
                        asked,
                    )
                    if row.user_id is not None
                }
            )
            if len(users) > 1:
                raise CtsyncError(
                    f"the anonymous id {asked!r} is stitched to {len(users)} users, one per source "
                    f"({', '.join(users)}): explain one of them"
                )
            if users:
                return users[0], users[0], "anonymous_id stitched to a user_id"
            if self._one(
                f"select 1 from {_q(self.identity)}.int_anonymous_ids_stitched where anonymous_id = :id", asked
            ):
                return None, asked, "anonymous_id never seen with a user_id"
        for table in ("engage_audience_memberships", "engage_computed_traits"):
            if self._one(f"select 1 from {self.e}.{table} where user_id = :id", asked):
                return asked, asked, "user_id"
            row = self._one(f"select max(user_id) as user_id from {self.e}.{table} where anonymous_id = :id", asked)
            if row is not None and row.user_id is not None:
                return str(row.user_id), str(row.user_id), "anonymous_id of a user_id"
        for id_type in ("user_id", "anonymous_id"):
            if _has_table(self.conn, STATE_SCHEMA, "sync_state") and self._one(
                f"select 1 from {STATE} where id_type = '{id_type}' and person_id = :id", asked
            ):
                return (asked if id_type == "user_id" else None), asked, f"{id_type} a destination confirmed"
        if self._one(
            f"select 1 from {self.e}.engage_audience_memberships where anonymous_id = :id and user_id is null", asked
        ) or self._one(f"select 1 from {self.e}.engage_computed_traits where anonymous_id = :id", asked):
            return None, asked, "anonymous_id"
        where = f"the identity models ({self.identity}.int_people_resolved), " if self.identity else ""
        raise CtsyncError(
            f"nobody has the user_id or anonymous_id {asked!r}: it is not in {where}the {self.e} tables or what a "
            "destination confirmed. A user_id is the CleverTap identity (else email, else phone); an anonymous_id "
            "is a CleverTap ID. Check the id, or load and build the data that holds it."
        )

    def _stitched(self, person_id: str) -> list[StitchedId]:
        if self.identity is None:
            return []
        rows = self._all(
            f"""
            select source_relation, anonymous_id, user_id, last_seen_at
            from {_q(self.identity)}.int_anonymous_ids_stitched
            where person_id = :id
            order by last_seen_at desc, anonymous_id
            """,
            person_id,
        )
        return [StitchedId(str(r.source_relation), str(r.anonymous_id), r.user_id, r.last_seen_at) for r in rows]

    # -- what the engage tables say --------------------------------------------------------

    def _audiences(self, user_id: str | None, person_id: str) -> list[ComputationExplained]:
        person = "m.user_id = :id" if user_id else "m.user_id is null and m.anonymous_id = :id"
        rows = self._all(
            f"""
            select a.audience_key as computation_key, max(a.audience_name) as name, max(a.model_name) as model_name,
                   count(m.audience_key) > 0 as is_member, max(m.computed_at) as computed_at
            from {self.e}.engage_audiences as a
            left join {self.e}.engage_audience_memberships as m
                on m.audience_key = a.audience_key and m.is_member and {person}
            where a.audience_key is not null
            group by a.audience_key
            order by a.audience_key
            """,
            person_id,
        )
        return [self._described("audience", r, "true" if r.is_member else "false", user_id, person_id) for r in rows]

    def _traits(self, user_id: str | None, person_id: str) -> list[ComputationExplained]:
        person = "v.user_id = :id" if user_id else "v.user_id is null and v.anonymous_id = :id"
        rows = self._all(
            f"""
            select t.trait_key as computation_key, max(t.trait_name) as name, max(t.model_name) as model_name,
                   max(v.value) as value, max(v.computed_at) as computed_at
            from {self.e}.engage_traits as t
            left join {self.e}.engage_computed_traits as v
                on v.trait_key = t.trait_key and v.value is not null and {person}
            where t.trait_key is not null
            group by t.trait_key
            order by t.trait_key
            """,
            person_id,
        )
        return [self._described("trait", r, r.value, user_id, person_id) for r in rows]

    def _described(
        self, computation_class: str, row: Any, value: str | None, user_id: str | None, person_id: str
    ) -> ComputationExplained:
        model = self.models.get(str(row.model_name), {})
        return ComputationExplained(
            computation_class=computation_class,
            computation_key=str(row.computation_key),
            name=str(row.name),
            model_name=str(row.model_name),
            value=value,
            computed_at=row.computed_at,
            anonymous_person=user_id is None,
            description=(str(model.get("description") or "").strip() or None),
            model_path=model.get("original_file_path"),
            in_model=self._in_model(str(row.model_name), person_id),
        )

    def _in_model(self, model_name: str, person_id: str) -> bool | None:
        """Whether the model's own table has a row for the person (before the engage rules apply)."""
        schema = _schema_of(self.conn, model_name, prefer=self.identity)
        if schema is None or schema in (self.e, STATE_SCHEMA):
            return None
        return self._one(f"select 1 from {_q(schema)}.{_q(model_name)} where person_id = :id", person_id) is not None

    # -- what destinations were sent and confirmed -----------------------------------------

    def _destinations(self, destination: str | None) -> list[str]:
        if destination is not None:
            return [destination]
        if not _has_table(self.conn, STATE_SCHEMA, "sync_runs"):
            return []
        rows = self.conn.execute(
            sa.text(f"select distinct destination from {STATE_SCHEMA}.sync_runs order by destination")
        )
        return [str(row.destination) for row in rows]

    def _deliveries(self, keys: list[tuple[str, str]], destinations: list[str]) -> dict[tuple[str, str, str], Delivery]:
        """(destination, class, key) -> what it was last sent and confirmed under any of the person's keys."""
        if not destinations or not _has_table(self.conn, STATE_SCHEMA, "sync_outbox"):
            return {}
        ids = sorted({person for _, person in keys})
        mine = set(keys)
        params = {"ids": ids, "destinations": destinations}
        confirmed: dict[tuple[str, str, str], Any] = {}
        for row in self.conn.execute(_STATE_ROWS, params):
            slot = (str(row.destination), str(row.computation_class), str(row.computation_key))
            if (row.id_type, row.person_id) in mine and (slot not in confirmed or row.seq > confirmed[slot].seq):
                confirmed[slot] = row
        sent: dict[tuple[str, str, str], Any] = {}
        for row in self.conn.execute(_OUTBOX_ROWS, params):
            slot = (str(row.destination), str(row.computation_class), str(row.computation_key))
            if (row.id_type, row.person_id) in mine and (slot not in sent or row.seq > sent[slot].seq):
                sent[slot] = row
        return {slot: _delivery(slot[0], confirmed.get(slot), sent.get(slot)) for slot in {*confirmed, *sent}}

    # -- helpers ---------------------------------------------------------------------------

    def _one(self, sql: str, value: str) -> Any:
        return self.conn.execute(sa.text(sql + ("" if " limit " in sql else " limit 1")), {"id": value}).first()

    def _all(self, sql: str, value: str) -> list[Any]:
        return list(self.conn.execute(sa.text(sql), {"id": value}).all())


_STATE_ROWS = sa.text(
    f"""
    select destination, computation_class, computation_key, id_type, person_id, value, message_id,
           confirmed_seq as seq, confirmed_at
    from {STATE}
    where destination in :destinations and person_id in :ids
    """
).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("destinations", expanding=True))

_OUTBOX_ROWS = sa.text(
    f"""
    select destination, computation_class, computation_key, id_type, person_id, value, message_id, seq,
           status, coalesce(sent_at, updated_at) as at, last_code, last_reason
    from {OUTBOX}
    where destination in :destinations and person_id in :ids
    """
).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("destinations", expanding=True))


def _delivery(destination: str, confirmed: Any, sent: Any) -> Delivery:
    problem = None
    if sent is not None and (sent.last_code or sent.last_reason):
        problem = f"{sent.last_code or '?'}: {sent.last_reason or 'no reason given'}"
    return Delivery(
        destination=destination,
        confirmed_value=confirmed.value if confirmed is not None else None,
        confirmed_message_id=confirmed.message_id if confirmed is not None else None,
        confirmed_at=confirmed.confirmed_at if confirmed is not None else None,
        sent_value=sent.value if sent is not None else None,
        sent_message_id=sent.message_id if sent is not None else None,
        sent_status=sent.status if sent is not None else None,
        sent_at=sent.at if sent is not None else None,
        problem=problem,
    )


def _schema_of(conn: sa.Connection, table: str, *, prefer: str | None = None) -> str | None:
    """The schema holding a table (or view) called ``table``; ``prefer`` when several do."""
    rows = conn.execute(
        sa.text("select distinct table_schema from information_schema.tables where table_name = :name order by 1"),
        {"name": table},
    ).all()
    schemas = [str(row[0]) for row in rows]
    if prefer in schemas:
        return prefer
    return schemas[0] if schemas else None


def _has_table(conn: sa.Connection, schema: str, table: str) -> bool:
    return _schema_of(conn, table, prefer=schema) == schema


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
