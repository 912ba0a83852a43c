"""Keys that differ only in case (``Email`` and ``email``): every one is read exactly, nothing fails.

DuckDB's STRUCT field names ignore case, so one json_transform cannot hold both; the loader reads
the second by JSON path. Before, such a key failed the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ctsync.naming import property_column, quote_identifier
from ctsync.warehouse.events import IdentifierPriority
from ctsync.warehouse.loader import LoadOptions, load_export_files
from ctsync.warehouse.structure import ObjectReader, struct_paths
from tests.conftest import event
from tests.warehouse.conftest import columns, query
from tests.warehouse.test_loader import OPTIONS, SCHEMA
from tests.warehouse.test_profiles import profile_file


def test_struct_paths_keep_the_first_of_keys_that_differ_only_in_case() -> None:
    paths = [("email",), ("Email",), ("Info", "x"), ("info", "y"), ("Info", "X"), ("Info", "z"), ("EMAIL",)]
    assert struct_paths(paths) == {("email",), ("Info", "x"), ("Info", "z")}
    reader = ObjectReader.plan("profile", "p", paths)
    assert reader.access(("email",)) == 'p."email"'
    assert reader.access(("Email",)) == "json_extract_string(profile, '/Email')"
    assert reader.access(("it's", "a/b~")) == "json_extract_string(profile, '/it''s/a~1b~0')"
    assert '"Email"' not in reader.transform_sql()
    assert ObjectReader.plan("x", "s", []).transform_sql() == "null"


def test_properties_that_differ_only_in_case_each_land_where_their_spelling_goes(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    export_file(
        "Signed Up",
        [
            event(
                "Signed Up",
                20240312094500,
                {"USERID": "upper", "UserId": "camel", "userId": "lower", "Info": {"x": 1}, "info": {"y": 2}},
                identity="u1",
            ),
            event("Signed Up", 20240312094501, {"userId": "lower only", "info": {"x": 3}}, identity="u2"),
        ],
    )

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)

    assert not summary.failed, [f.error for f in summary.failed]
    assert summary.total("rows_inserted") == 2
    cols = columns(warehouse, "signed_up")
    assert {"userid", "_user_id", "info_x", "info_y"} <= set(cols)
    rows = query(warehouse, f"select user_id, userid, _user_id, info_x, info_y from {SCHEMA}.signed_up order by 1")
    # USERID snake-cases to userid; UserId and userId both to user_id (reserved: _user_id), and of
    # two spellings in one record the one that sorts first wins (docs/decisions.md).
    assert rows == [("u1", "upper", "camel", 1, 2), ("u2", None, "lower only", 3, None)]


def test_profile_and_device_keys_that_differ_only_in_case(
    export_file: Callable[..., Path], tmp_path: Path, make_warehouse: Callable[[], str]
) -> None:
    record = event("App Launched", 20240312094500, {}, identity="u1", Email="Cap@x.com", email="low@x.com")
    record["deviceInfo"] = {"Model": "Pixel", "model": "pixel-8"}
    only_lower = event("App Launched", 20240312094501, {}, identity="u2", email="second@x.com")
    only_lower["deviceInfo"] = {"model": "iPhone"}
    export_file("App Launched", [record, only_lower])

    email_first = LoadOptions(nickname="CleverTap_Prod", identifiers=IdentifierPriority(user_id=("email",)))
    for options in (OPTIONS, email_first):
        warehouse = make_warehouse()
        summary = load_export_files([str(tmp_path / "export")], options, warehouse=warehouse)
        assert not summary.failed, [f.error for f in summary.failed]
        rows = query(
            warehouse,
            f"select user_id, context_traits_email, context_device_model from {SCHEMA}.app_launched order by timestamp",
        )
        # The identifier reads the key it names, exactly: email, not Email.
        user_ids = ["u1", "u2"] if options is OPTIONS else ["low@x.com", "second@x.com"]
        assert rows == [(user_ids[0], "Cap@x.com", "Pixel"), (user_ids[1], "second@x.com", "iPhone")]


def test_profile_export_records_with_keys_that_differ_only_in_case(tmp_path: Path, warehouse: str) -> None:
    records = [
        {"identity": "u-1", "clevertapId": "__g1", "Email": "jane@example.com", "email": "old@example.com"},
        {"identity": "u-2", "clevertapId": "__g2", "email": "bob@example.com"},
    ]
    profile_file(tmp_path / "p", 1761651721, list(records))

    summary = load_export_files([str(tmp_path / "p")], OPTIONS, warehouse=warehouse)

    assert not summary.failed, [f.error for f in summary.failed]
    rows = query(warehouse, f"select user_id, email from {SCHEMA}.identifies order by user_id")
    assert rows == [("u-1", "jane@example.com"), ("u-2", "bob@example.com")]


def test_keys_a_json_path_cannot_name_load_too(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    props = {"": "empty", "a/b": 1, "t~x": 2, "sp ace": 3, "it's": 4, 'q"uote': 5, "$x": 6, "n": {"": {"z": 7}}}
    record = event("App Launched", 20240312094500, props, identity="u1")
    record["profile"][""] = "empty trait"
    export_file("App Launched", [record])

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)

    assert not summary.failed, [f.error for f in summary.failed]
    empty, nested = property_column(("",)), property_column(("n", "", "z"))
    trait = property_column(("",), prefix="context_traits_")
    names = ["a_b", "t_x", "sp_ace", "it_s", "q_uote", "x", empty, nested, trait]
    assert set(names) <= set(columns(warehouse, "app_launched"))
    row = query(warehouse, f"select {', '.join(quote_identifier(n) for n in names)} from {SCHEMA}.app_launched")
    assert row == [(1, 2, 3, 4, 5, 6, "empty", 7, "empty trait")]
