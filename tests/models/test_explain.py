"""``ctsync explain`` on a warehouse dbt built from the sample and synced to a JSON-lines file: for a
person picked from that file, every audience and trait agrees with the engage tables, the identity
models and what the file received."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.engage.run import sync_destination
from ctsync.explain import explain_person
from tests.models.conftest import BuiltSample, query


@pytest.fixture(scope="module")
def synced(built_sample: BuiltSample, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A copy of the built sample synced to ``identify.jsonl``; and dbt's manifest of that build."""
    folder = tmp_path_factory.mktemp("explain")
    warehouse = folder / "warehouse.duckdb"
    shutil.copyfile(built_sample.warehouse, warehouse)
    identify = folder / "identify.jsonl"
    config = folder / "ctsync.yml"
    config.write_text(yaml.safe_dump({"destinations": {"jsonl": {"type": "jsonl", "path": str(identify)}}}))
    summary = sync_destination("jsonl", warehouse=str(warehouse), config_path=config, environ={})
    assert summary.status == "succeeded" and summary.sent > 0
    return warehouse, identify, built_sample.work / "target" / "manifest.json"


def messages(identify: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in identify.read_text().splitlines()]


def stitched_user(warehouse: Path, identify: Path) -> str:
    """A user the file names most often among those with an anonymous id stitched to them."""
    stitched = dict(
        query(
            warehouse,
            "select user_id, count(*) from analytics.int_anonymous_ids_stitched where user_id is not null group by 1",
        )
    )
    counts = Counter(str(m["userId"]) for m in messages(identify) if m.get("userId") in stitched)
    return counts.most_common(1)[0][0]


def test_explain_agrees_with_the_warehouse_and_what_was_sent(synced: tuple[Path, Path, Path]) -> None:
    warehouse, identify, manifest = synced
    user = stitched_user(warehouse, identify)

    found = explain_person(user, warehouse=str(warehouse), manifest=manifest)

    assert (found.user_id, found.person_id, found.destinations, found.identity_models) == (
        user,
        user,
        ["jsonl"],
        "analytics",
    )
    devices = query(
        warehouse,
        f"select anonymous_id, source_relation from analytics.int_anonymous_ids_stitched where user_id = '{user}'",
    )
    assert sorted((s.anonymous_id, s.source_relation) for s in found.stitched) == sorted(devices)
    members = {key for (key,) in query(warehouse, f"select audience_key from engage.engage_audience_memberships "
                                                   f"where user_id = '{user}'")}  # fmt: skip
    values = dict(
        query(warehouse, f"select trait_key, value from engage.engage_computed_traits where user_id = '{user}'")
    )
    sent = {
        m["context"]["personas"]["computation_key"]: m  # type: ignore[index]
        for m in messages(identify)
        if m.get("userId") == user
    }
    audiences = [c for c in found.computations if c.computation_class == "audience"]
    traits = [c for c in found.computations if c.computation_class == "trait"]
    assert len(audiences) == 6 and len(traits) == 3
    assert {c.computation_key for c in audiences if c.value == "true"} == members
    assert {c.computation_key: c.value for c in traits if c.value is not None} == values
    for computation in found.computations:
        [delivery] = computation.deliveries
        message = sent.get(computation.computation_key)
        if message is None:  # never sent: not a member, no value
            assert computation.value in ("false", None) and delivery.sent_message_id is None
            continue
        assert delivery.sent_message_id == delivery.confirmed_message_id == message["messageId"]
        assert json.loads(str(delivery.confirmed_value)) == message["traits"][computation.computation_key]  # type: ignore[index]
        assert delivery.sent_status == "sent"
    orders = next(c for c in found.computations if c.computation_key == "order_completed_last_30days")
    assert orders.model_path == "models/audiences/order_completed_last_30days.sql"
    assert orders.description == "Order Completed Last 30days: a Charged event in the 30 days up to as_of."
    assert orders.why.endswith(": Order Completed Last 30days: a Charged event in the 30 days up to as_of.")

    by_device = explain_person(found.stitched[-1].anonymous_id, warehouse=str(warehouse), manifest=manifest)
    assert (by_device.user_id, by_device.found_by) == (user, "anonymous_id stitched to a user_id")


def test_a_person_the_model_selects_but_the_audience_leaves_out(synced: tuple[Path, Path, Path]) -> None:
    """An anonymous-only buyer is in the order model's table, but that audience takes only people with a user_id."""
    warehouse, _, manifest = synced
    [(anonymous,)] = query(
        warehouse,
        "select min(o.person_id) from analytics.order_completed_last_30days as o "
        "inner join analytics.int_people_resolved as p on p.person_id = o.person_id and p.is_anonymous",
    )
    assert anonymous is not None, "the sample has anonymous buyers"

    found = explain_person(str(anonymous), warehouse=str(warehouse), manifest=manifest)

    assert found.user_id is None and found.found_by == "anonymous_id never seen with a user_id"
    orders = next(c for c in found.computations if c.computation_key == "order_completed_last_30days")
    assert (orders.value, orders.in_model) == ("false", True)
    assert "leaves out people without a user_id (include_anonymous is false)" in orders.why


def test_the_explain_command_on_a_user_from_the_sync_file(synced: tuple[Path, Path, Path]) -> None:
    warehouse, identify, manifest = synced
    user = stitched_user(warehouse, identify)

    result = CliRunner().invoke(
        app, ["explain", user, "--warehouse", str(warehouse), "--manifest", str(manifest)], env={"COLUMNS": "200"}
    )

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"user_id {user}"
    assert any(line.startswith("  anonymous_id ") and f"stitched to user_id {user}" in line for line in lines)
    headlines = [line for line in lines if line.startswith(("audience ", "trait "))]
    assert len(headlines) == 9
    assert sum("jsonl: last sent" in line for line in lines) == sum(
        1 for m in messages(identify) if m.get("userId") == user
    )
