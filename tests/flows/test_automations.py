"""The README's automation: a failed ctsync flow run notifies; Prefect's server accepts the definition.

A custom-webhook notification block points at a real HTTP server on 127.0.0.1, and Prefect's test
server runs the automation (its triggers and actions services run in the test server too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect import flow
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from flows import automations
from flows.sync import sync_audiences
from tests.servers import FakeHttpApi, RecordedRequest, Reply


class NotificationInbox(FakeHttpApi):
    """Accepts every webhook call; ``requests`` keeps them."""

    def process(self, request: RecordedRequest) -> tuple[Reply, bool]:
        return Reply(200), True

    def notifications(self) -> list[dict[str, str]]:
        return [request.json() for request in self.requests]


@pytest.fixture
def inbox() -> Iterator[NotificationInbox]:
    with NotificationInbox() as server:
        yield server


@pytest.fixture
def alerts_block(inbox: NotificationInbox) -> str:
    """A saved custom-webhook block posting each notification's subject and body to the inbox."""
    block = CustomWebhookNotificationBlock(
        name="ctsync alerts", url=f"{inbox.url}/hook", json_data={"subject": "{{subject}}", "body": "{{body}}"}
    )
    block.save("ctsync-test-alerts", overwrite=True)
    return f"{block.get_block_type_slug()}/ctsync-test-alerts"


@pytest.fixture
def no_automation_left() -> Iterator[None]:
    """The session's Prefect server keeps no ctsync automation after the test (other tests fail flows on purpose)."""
    yield
    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(automations.NAME):
            client.delete_automation(automation.id)


@flow(name="someone-elses-flow")
def someone_elses_flow() -> None:
    raise RuntimeError("not a ctsync flow")


def wait_for_notifications(inbox: NotificationInbox, seconds: float = 60) -> list[dict[str, str]]:
    deadline = time.monotonic() + seconds
    while not inbox.requests and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(1)  # anything sent for an earlier event has arrived by now
    return inbox.notifications()


def test_a_failed_ctsync_run_notifies_once_and_other_flows_do_not(
    inbox: NotificationInbox, alerts_block: str, no_automation_left: None, tmp_path: Path
) -> None:
    assert automations.main(["--notify", alerts_block]) == 0
    assert automations.main(["--notify", alerts_block]) == 0  # again: replaced, not doubled
    time.sleep(2)  # the triggers service picks up the new automation
    assert someone_elses_flow(return_state=True).is_failed()
    missing = tmp_path / "missing.duckdb"
    assert sync_audiences("jsonl", warehouse=str(missing), return_state=True).is_failed()
    [notification] = wait_for_notifications(inbox)
    assert (
        notification["subject"].startswith("ctsync: sync-audiences run ") and "ended Failed" in notification["subject"]
    )
    assert f"no warehouse at {missing}" in notification["body"]


def test_every_ctsync_flow_is_watched() -> None:
    trigger = automations.failed_run_automation(UUID(int=1))["trigger"]
    assert set(trigger["match_related"]["prefect.resource.name"]) == {
        "clevertap-engage-pipeline",
        "load-clevertap-exports",
        "build-audiences",
        "sync-audiences",
        "backfill-clevertap-export",
    }


def test_the_written_automation_is_accepted_by_prefect_automation_create(
    alerts_block: str, no_automation_left: None, tmp_path: Path
) -> None:
    path = tmp_path / "ctsync-alerts.yaml"
    assert automations.main(["--notify", alerts_block, "--write", str(path)]) == 0
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    created = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "automation", "create", "--from-file", str(path)],
        env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(automations.NAME)
        block = client.read_block_document(automation.actions[0].block_document_id)
    stored = json.loads(automation.trigger.model_dump_json())
    assert set(stored["expect"]) == set(written["trigger"]["expect"]) == set(automations.FAILED_RUN_EVENTS)
    assert (
        stored["match_related"]["prefect.resource.name"] == written["trigger"]["match_related"]["prefect.resource.name"]
    )
    assert block.block_type is not None and f"{block.block_type.slug}/{block.name}" == alerts_block


def test_a_block_that_does_not_exist_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="no slack-webhook block named 'nobody'"):
        automations.main(["--notify", "slack-webhook/nobody"])
