"""``ctsync explain``: a person's audiences and traits now, and what each destination was sent and confirmed.

The engage tables here are written by hand (no identity models); tests/models/test_explain.py runs it on
a warehouse dbt built.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.destinations import SegmentHttpClient
from ctsync.engage.run import sync_destination
from ctsync.errors import CtsyncError
from ctsync.explain import Explanation, explain_person, next_value
from tests.engage.conftest import EngageData, sync_environment, users
from tests.servers.segment import SegmentServer

BACKENDS = ("duckdb", "postgres")


def by_key(found: Explanation) -> dict[str, tuple[str | None, str | None, str | None, str | None]]:
    """key -> (value now, last sent value, its status, confirmed value) at the one destination."""
    result = {}
    for computation in found.computations:
        [delivery] = computation.deliveries
        result[computation.computation_key] = (
            computation.value,
            delivery.sent_value,
            delivery.sent_status,
            delivery.confirmed_value,
        )
    return result


def test_explain_says_what_is_computed_sent_and_confirmed(
    engage: EngageData, segment_server: SegmentServer, segment: SegmentHttpClient
) -> None:
    engage.audience("vip", users(1, 2))
    engage.audience("newsletter", users(2))
    engage.trait("ltv", {("u1", "a1"): 5})
    segment_server.fail_next(1, 400, body={"code": "invalid_request", "message": "bad batch"})
    sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    engage.audience("newsletter", users(1, 2))

    found = explain_person("u1", warehouse=engage.warehouse)

    assert (found.user_id, found.person_id, found.destinations) == ("u1", "u1", ["segment"])
    assert by_key(found) == {
        "newsletter": ("true", None, None, None),
        "vip": ("true", "true", "rejected", None),
        "ltv": ("5", "5", "rejected", None),
    }
    vip = found.computations[1]
    assert vip.deliveries[0].problem is not None and "bad batch" in vip.deliveries[0].problem
    assert vip.why == "model vip selects them"
    assert next_value(vip, vip.deliveries[0]) == "true"

    sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    engage.audience("vip", users(2))
    after = explain_person("a1", warehouse=engage.warehouse, destination="segment")

    assert (after.user_id, after.asked) == ("u1", "a1")
    assert by_key(after) == {
        "newsletter": ("true", "true", "sent", "true"),
        "vip": ("false", "true", "sent", "true"),
        "ltv": ("5", "5", "sent", "5"),
    }
    vip = after.computations[1]
    message = vip.deliveries[0].sent_message_id
    assert vip.deliveries[0].confirmed_message_id == message
    assert message in {m["messageId"] for m in segment_server.messages if m["userId"] == "u1" and "vip" in m["traits"]}
    assert vip.why == "model vip does not select them" and next_value(vip, vip.deliveries[0]) == "false"

    sync_destination("segment", warehouse=engage.warehouse, destination=segment, environ={})
    [vip] = [c for c in explain_person("u1", warehouse=engage.warehouse).computations if c.computation_key == "vip"]
    [exit_message] = [m for m in segment_server.messages if m["userId"] == "u1" and m["traits"] == {"vip": False}]
    assert (vip.deliveries[0].sent_value, vip.deliveries[0].confirmed_value) == ("false", "false")
    assert vip.deliveries[0].sent_message_id == exit_message["messageId"] != message
    assert next_value(vip, vip.deliveries[0]) is None


def test_explain_an_anonymous_only_person(engage: EngageData) -> None:
    engage.audience("browsers", [(None, "anon-7")], include_anonymous=True)
    engage.audience("vip", users(1))

    found = explain_person("anon-7", warehouse=engage.warehouse)

    assert (found.user_id, found.person_id, found.destinations) == (None, "anon-7", [])
    assert {c.computation_key: c.value for c in found.computations} == {"browsers": "true", "vip": "false"}


def test_an_unknown_person_is_a_clear_error(engage: EngageData) -> None:
    engage.audience("vip", users(1))
    with pytest.raises(CtsyncError, match="nobody has the user_id or anonymous_id 'u404'"):
        explain_person("u404", warehouse=engage.warehouse)


def test_the_explain_command(engage: EngageData, tmp_path: Path) -> None:
    engage.audience("vip", users(1, 2))
    engage.trait("ltv", {("u1", "a1"): 5})
    env = sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "identify.jsonl"))
    runner = CliRunner()
    assert runner.invoke(app, ["sync", "-d", "jsonl", "--warehouse", engage.warehouse], env=env).exit_code == 0
    engage.audience("vip", users(2))

    result = runner.invoke(app, ["explain", "u1", "--warehouse", engage.warehouse], env=env)

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert output.startswith("user_id u1")
    assert "audience vip (Vip): not a member" in output
    assert "why: model vip does not select them" in output
    assert "jsonl: last sent true (sent" in output and "confirmed true" in output
    assert "the next sync sends false" in output
    assert "trait ltv (ltv): value 5" in output
    unknown = runner.invoke(app, ["explain", "nobody", "--warehouse", engage.warehouse], env=env)
    assert unknown.exit_code == 2 and "nobody has the user_id or anonymous_id" in " ".join(unknown.output.split())
