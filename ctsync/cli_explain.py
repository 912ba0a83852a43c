"""``ctsync explain USER_ID``: a thin command over :mod:`ctsync.explain`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ctsync.cli_support import WarehouseOption, out, run_command
from ctsync.settings import load_settings

if TYPE_CHECKING:  # the engine is imported when the command runs, not for --help
    from ctsync.explain import ComputationExplained, Delivery, Explanation


def explain(
    person: Annotated[str, typer.Argument(help="A user_id, or an anonymous_id (CleverTap ID).")],
    destination: Annotated[
        str | None,
        typer.Option("--destination", "-d", help="Only this destination (default: every one synced to)."),
    ] = None,
    warehouse: WarehouseOption = None,
    manifest: Annotated[
        str | None,
        typer.Option(help="dbt's manifest.json, for the models' descriptions [default: target/manifest.json]."),
    ] = None,
) -> None:
    """Why a person is in or out of each audience and has each trait value, and what each destination
    was last sent and confirmed."""
    from ctsync.explain import explain_person

    def action() -> Explanation:
        return explain_person(
            person, warehouse=warehouse or load_settings().warehouse, destination=destination, manifest=manifest
        )

    for line in explanation_lines(run_command(action)):
        out().print(line)


def explanation_lines(found: Explanation) -> list[str]:
    """What ``ctsync explain`` prints, a line each."""
    lines = [_who(found)]
    for stitched in found.stitched:
        seen = f", last seen {_when(stitched.last_seen_at)}" if stitched.last_seen_at else ""
        to = f"stitched to user_id {stitched.user_id}" if stitched.user_id else "never seen with a user_id"
        lines.append(f"  anonymous_id {stitched.anonymous_id} ({stitched.source_relation}{seen}): {to}")
    if found.identity_models is None:
        lines.append("  (no identity models in the warehouse: stitching unknown)")
    if not found.destinations:
        lines.append("no sync runs yet: nothing was sent to any destination")
    for computation in found.computations:
        lines += ["", _headline(computation), f"  why: {computation.why}"]
        lines += [f"  {_delivered(computation, delivery)}" for delivery in computation.deliveries]
    return lines


def _who(found: Explanation) -> str:
    if found.user_id is None:
        return f"anonymous_id {found.person_id}: a person without a user_id ({found.found_by})"
    if found.asked != found.user_id:
        return f"user_id {found.user_id} (asked for {found.asked}: {found.found_by})"
    return f"user_id {found.user_id}"


def _headline(computation: ComputationExplained) -> str:
    if computation.computation_class == "audience":
        now = "MEMBER" if computation.value == "true" else "not a member"
    else:
        now = f"value {computation.value}" if computation.value is not None else "no value"
    when = f" (computed as of {_when(computation.computed_at)})" if computation.computed_at else ""
    return f"{computation.computation_class} {computation.computation_key} ({computation.name}): {now}{when}"


def _delivered(computation: ComputationExplained, delivery: Delivery) -> str:
    from ctsync.explain import next_value

    change = next_value(computation, delivery)
    then = f"; the next sync sends {change}" if change is not None else ""
    if delivery.sent_message_id is None and delivery.confirmed_message_id is None:
        return f"{delivery.destination}: nothing sent yet{then}"
    parts = []
    if delivery.sent_message_id is not None:
        problem = f", {delivery.problem}" if delivery.problem else ""
        parts.append(
            f"last sent {delivery.sent_value} ({delivery.sent_status} {_when(delivery.sent_at)}, "
            f"messageId {delivery.sent_message_id}{problem})"
        )
    if delivery.confirmed_message_id is not None:
        parts.append(f"confirmed {delivery.confirmed_value} ({_when(delivery.confirmed_at)})")
    else:
        parts.append("nothing confirmed")
    return f"{delivery.destination}: " + "; ".join(parts) + then


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"
