"""A Prefect automation that notifies someone whenever a ctsync flow run fails.

    python -m flows.automations --notify slack-webhook/ctsync-alerts          # create (or replace) it
    python -m flows.automations --notify slack-webhook/ctsync-alerts --write ctsync-alerts.yaml

``--notify`` names a notification block saved on the Prefect server (``BLOCK-TYPE/NAME``, as
``prefect block ls`` lists them): Slack, Microsoft Teams, email, PagerDuty, a custom webhook...
The automation goes to the Prefect API of PREFECT_API_URL; ``--write`` writes it instead as a
file for ``prefect automation create --from-file``. A failed, crashed or timed-out run of any
ctsync flow triggers it, once per run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

NAME = "ctsync: a flow run failed"
FAILED_RUN_EVENTS = ("prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut")
SUBJECT = "ctsync: {{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }}"
BODY = (
    "{{ flow.name }} run {{ flow_run.name }} ended {{ flow_run.state.name }} at {{ flow_run.state.timestamp }}.\n"
    "{{ flow_run.state.message }}\n"
    "Parameters: {{ flow_run.parameters }}\n"
    "Run: {{ flow_run|ui_url }}"
)


def ctsync_flow_names() -> list[str]:
    """The names of every ctsync flow (the pipeline and each step it runs, and the backfill)."""
    from flows.backfill import backfill_clevertap_export
    from flows.build import build_audiences
    from flows.load import load_clevertap_exports
    from flows.pipeline import clevertap_engage_pipeline
    from flows.sync import sync_audiences

    flows = (
        clevertap_engage_pipeline,
        load_clevertap_exports,
        build_audiences,
        sync_audiences,
        backfill_clevertap_export,
    )
    return [flow.name for flow in flows]


def failed_run_automation(block_document_id: UUID | str) -> dict[str, Any]:
    """The automation, as ``prefect automation create --from-file`` reads it."""
    return {
        "name": NAME,
        "description": "Notifies when a ctsync flow run fails, crashes or times out (see the ctsync README).",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Reactive",
            "expect": list(FAILED_RUN_EVENTS),
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {"prefect.resource.role": "flow", "prefect.resource.name": ctsync_flow_names()},
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": 0,
        },
        "actions": [
            {"type": "send-notification", "block_document_id": str(block_document_id), "subject": SUBJECT, "body": BODY}
        ],
    }


def notification_block_id(block: str) -> UUID:
    """The id of the saved block ``BLOCK-TYPE/NAME`` (``slack-webhook/ctsync-alerts``)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    block_type, _, name = block.partition("/")
    if not block_type or not name:
        raise SystemExit(f"--notify takes BLOCK-TYPE/NAME, as `prefect block ls` lists it, not {block!r}")
    with get_client(sync_client=True) as client:
        try:
            return client.read_block_document_by_name(name, block_type, include_secrets=False).id
        except ObjectNotFound:
            raise SystemExit(
                f"no {block_type} block named {name!r} on this Prefect server: save one first (README, section 4)"
            ) from None


def create_or_replace(definition: dict[str, Any]) -> UUID:
    """Create the automation, replacing any earlier one of the same name (running this twice is harmless)."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    automation = AutomationCore.model_validate(definition)
    with get_client(sync_client=True) as client:
        for earlier in client.read_automations_by_name(automation.name):
            client.delete_automation(earlier.id)
        return client.create_automation(automation)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.automations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notify", required=True, metavar="BLOCK-TYPE/NAME", help="the notification block to use")
    parser.add_argument("--write", metavar="FILE", help="write the automation to FILE (YAML) instead of creating it")
    args = parser.parse_args(argv)
    definition = failed_run_automation(notification_block_id(args.notify))
    if args.write:
        Path(args.write).write_text(yaml.safe_dump(definition, sort_keys=False), encoding="utf-8")
        print(f"wrote {args.write}: create it with `prefect automation create --from-file {args.write}`")
    else:
        automation_id = create_or_replace(definition)
        print(f"created automation {NAME!r} ({automation_id}): failed ctsync runs notify {args.notify}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
