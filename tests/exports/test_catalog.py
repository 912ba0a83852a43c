"""The event catalog seed: the one place the system and engagement event lists live."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ctsync.errors import CtsyncError
from ctsync.exports.catalog import CATALOG_FILE, find_event_catalog, load_event_catalog

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / CATALOG_FILE
HEADER = "event_name,event_key,description,mparticle_event_type,is_system_event,is_engagement_event\n"


def test_the_lists_follow_cleverTaps_export_dialog() -> None:
    catalog = load_event_catalog(SEED)
    # Spot checks against seed 004: the "All System Events" table and the "Engagement Events" list.
    assert {"App Launched", "Session Concluded", "AB Experiment Disqualified", "App Version Changed"} <= (
        catalog.system_events - catalog.engagement_events
    )
    assert {"Notification Delivered", "Webhook Delivered"} <= catalog.engagement_events - catalog.system_events
    assert {"Notification Sent", "UTM Visited", "App Uninstalled"} <= catalog.system_events & catalog.engagement_events
    assert "Charged" not in catalog.system_events | catalog.engagement_events
    # Push Impressions is listed twice in CleverTap's tables: it is one event.
    assert (len(catalog.system_events), len(catalog.engagement_events)) == (21, 18)


def test_the_sets_are_read_from_the_seed_not_from_code(tmp_path: Path) -> None:
    seed = tmp_path / "catalog.csv"
    seed.write_text(
        HEADER + "Only System,only_system,,,true,false\nOnly Engagement,only_engagement,,,false,true\n"
        "Neither,neither,,,false,false\n"
    )
    catalog = load_event_catalog(seed)
    assert catalog.system_events == {"Only System"}
    assert catalog.engagement_events == {"Only Engagement"}
    assert catalog.event("Neither").key == "neither"


def test_reading_the_seed_twice_sees_a_changed_file(tmp_path: Path) -> None:
    seed = tmp_path / "catalog.csv"
    seed.write_text(HEADER + "A,a,,,true,false\n")
    assert load_event_catalog(seed).system_events == {"A"}
    seed.write_text(HEADER + "A,a,,,true,false\nB,b,,,true,false\n")
    assert load_event_catalog(seed).system_events == {"A", "B"}


def test_matches_the_seed_row_by_row() -> None:
    with SEED.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    catalog = load_event_catalog(SEED)
    for row in rows:
        event = catalog.event(row["event_name"])
        assert event.is_system_event == (row["is_system_event"] == "true")
        assert event.is_engagement_event == (row["is_engagement_event"] == "true")


def test_unknown_names_get_a_clear_error_with_a_suggestion() -> None:
    catalog = load_event_catalog(SEED)
    with pytest.raises(CtsyncError, match=r"'app launched' is not in the event catalog .*did you mean 'App Launched'"):
        catalog.event("app launched")
    assert catalog.system_event_problem("App Launched") is None
    assert catalog.system_event_problem("Charged") == "'Charged' is not a system event"
    assert "did you mean 'App Installed'" in (catalog.system_event_problem("App Instaled") or "")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("event_name,is_system_event\nA,true\n", "lacks the column"),
        (HEADER + "A,a,,,maybe,false\n", r"line 2: is_system_event must be true or false, not 'maybe'"),
        (HEADER + ",a,,,true,false\n", "line 2: event_name is empty"),
    ],
)
def test_a_broken_seed_is_refused(tmp_path: Path, content: str, message: str) -> None:
    seed = tmp_path / "catalog.csv"
    seed.write_text(content)
    with pytest.raises(CtsyncError, match=message):
        load_event_catalog(seed)


def test_a_missing_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CtsyncError, match="cannot read the event catalog"):
        load_event_catalog(tmp_path / "nope.csv")


def test_the_project_seed_is_found_from_a_folder_inside_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "seeds").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    (project / CATALOG_FILE).write_text(HEADER + "Mine,mine,,,true,true\n")
    inner = project / "models" / "staging"
    inner.mkdir(parents=True)
    assert find_event_catalog(inner) == (project / CATALOG_FILE).resolve()
    assert load_event_catalog(find_event_catalog(inner)).system_events == {"Mine"}


def test_a_folder_outside_any_project_falls_back_to_ctsyncs_own_seed(tmp_path: Path) -> None:
    assert find_event_catalog(tmp_path) == SEED
