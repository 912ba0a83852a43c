"""Profile exports into identifies and users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctsync.exports.files import FileKind
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.conftest import event, write_export
from tests.warehouse.conftest import columns, query
from tests.warehouse.test_loader import SCHEMA

OPTIONS = LoadOptions(nickname="CleverTap_Prod")


def profile_file(folder: Path, run_ts: int, records: list[dict[str, Any] | str]) -> Path:
    """A legacy profile export: <account id>-<request id>-<run ts>-<db id>-json.gz."""
    return write_export(folder / f"100000000-1700000001-{run_ts}-3-json.gz", records)


JANE = {
    "identity": "u-1",
    "all_identities": ["u-1", "jane@example.com"],
    "clevertapId": "__g1",
    "device": {"token": "fcm:abc"},
    "MSG-push": True,
    "MSG-email": True,
    "MSG-sms": False,
    "MSG-whatsapp": True,
    "Email": "jane@example.com",
    "Phone": "+14155551234",
    "Name": "Jane Doe",
    "Gender": "F",
    "DOB": "$D_631152000",
    "Photo": "https://example.com/jane.png",
    "Customer Type": "Gold",
}


def test_profiles_become_identifies_and_users(tmp_path: Path, warehouse: str) -> None:
    anonymous = {"clevertapId": "__g2", "MSG-push": True}
    by_email = {"clevertapId": "__g3", "Email": "bob@example.com", "Name": "Bob"}
    profile_file(tmp_path / "p", 1761651721, [JANE, anonymous, by_email])
    summary = load_export_files([str(tmp_path / "p")], OPTIONS, warehouse=warehouse)
    assert summary.total("rows_inserted") == 3 and summary.users_refreshed == 2
    cols = columns(warehouse, "identifies")
    assert cols["msg_push"] == "BOOLEAN" and cols["device_token"] == "VARCHAR" and cols["customer_type"] == "VARCHAR"
    assert {"name", "email", "phone", "gender", "dob", "photo", "all_identities", "clevertap_id", "identity"} <= set(
        cols
    )
    rows = query(warehouse, f"select user_id, anonymous_id, timestamp from {SCHEMA}.identifies order by anonymous_id")
    assert [row[:2] for row in rows] == [("u-1", "__g1"), (None, "__g2"), ("bob@example.com", "__g3")]
    assert str(rows[0][2]) == "2025-10-28 11:42:01+00:00"  # the export's run time, from the file name
    users = query(warehouse, f"select id, name, email, msg_sms, all_identities from {SCHEMA}.users order by id")
    assert users == [
        ("bob@example.com", "Bob", "bob@example.com", None, None),
        ("u-1", "Jane Doe", "jane@example.com", False, '["u-1","jane@example.com"]'),
    ]
    assert "anonymous_id" not in columns(warehouse, "users")


def test_users_hold_the_latest_traits_whatever_the_load_order(tmp_path: Path, warehouse: str) -> None:
    newer = {**JANE, "Email": "jane@new.example.com", "Customer Type": "Platinum"}
    del newer["Photo"]  # a key missing from a newer export keeps its last known value
    older = {**JANE, "Email": "jane@old.example.com", "Name": "Jane Old"}
    profile_file(tmp_path / "a", 1761651721, [JANE])
    profile_file(tmp_path / "b", 1761738121, [newer])
    profile_file(tmp_path / "c", 1761565321, [older])
    for folder in ("a", "b", "c"):
        load_export_files([str(tmp_path / folder)], OPTIONS, warehouse=warehouse)
    assert query(warehouse, f"select count(*) from {SCHEMA}.identifies")[0][0] == 3
    assert query(warehouse, f"select email, customer_type, photo, name from {SCHEMA}.users") == [
        ("jane@new.example.com", "Platinum", "https://example.com/jane.png", "Jane Doe")
    ]


def test_bad_profile_lines_are_quarantined_and_reloads_add_nothing(tmp_path: Path, warehouse: str) -> None:
    profile_file(tmp_path / "p", 1761651721, [JANE, "{not json", json.dumps({"Name": "nobody"}), "[1]"])
    first = load_export_files([str(tmp_path / "p")], OPTIONS, warehouse=warehouse)
    counts = first.files[0].counts
    assert (counts.lines_read, counts.rows_loaded, counts.rows_rejected) == (4, 1, 3)
    reasons = [row[0] for row in query(warehouse, f"select reason from {SCHEMA}._rejected order by line_number")]
    assert reasons == [
        "invalid JSON",
        "no identity, clevertapId, objectId, Email or Phone",
        "a JSON array, not an object",
    ]
    second = load_export_files([str(tmp_path / "p")], OPTIONS, warehouse=warehouse)
    assert second.count("loaded") == 0
    assert query(warehouse, f"select count(*) from {SCHEMA}.identifies")[0][0] == 1


def test_files_are_told_apart_by_content_and_kinds_can_be_limited(tmp_path: Path, warehouse: str) -> None:
    write_export(tmp_path / "mixed" / "profiles.json.gz", [JANE])
    write_export(tmp_path / "mixed" / "events.json.gz", [event("App Launched", 20240312094500)])
    summary = load_export_files(
        [str(tmp_path / "mixed")],
        LoadOptions(nickname="CleverTap_Prod", kinds=frozenset({FileKind.EVENTS})),
        warehouse=warehouse,
    )
    assert [(f.file.name, f.status) for f in sorted(summary.files, key=lambda f: f.file.name)] == [
        ("events.json.gz", "loaded"),
        ("profiles.json.gz", "skipped"),
    ]
    summary = load_export_files([str(tmp_path / "mixed")], OPTIONS, warehouse=warehouse)
    assert summary.inserted_by_event == {"identifies": 1}
