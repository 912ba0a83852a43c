"""A table's columns and rows do not depend on how the load cut the files into batches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ctsync.exports.files import discover_files
from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, _batches, load_export_files
from tests.conftest import event
from tests.warehouse.conftest import columns, query

SCHEMA = "clevertap_prod"
BATCH_BYTES = 200_000


def _tables(warehouse: str) -> list[str]:
    rows = query(
        warehouse,
        "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
        [SCHEMA],
    )
    return sorted(str(row[0]) for row in rows if not str(row[0]).startswith("_"))


def _snapshot(warehouse: str) -> dict[str, tuple[dict[str, str], list[tuple[object, ...]]]]:
    """Every event table's columns and rows (without the load's own time)."""
    found = {}
    for table in _tables(warehouse):
        kept = sorted(name for name in columns(warehouse, table) if name not in ("received_at", "uuid_ts"))
        listed = ", ".join(f'"{name}"' for name in kept)
        rows = query(warehouse, f'select {listed} from {SCHEMA}."{table}" order by id')
        found[table] = ({name: columns(warehouse, table)[name] for name in kept}, rows)
    return found


def test_one_export_in_one_batch_or_many_gives_the_same_tables(
    tmp_path: Path, make_warehouse: Callable[[], str]
) -> None:
    export = tmp_path / "export"
    write_sample_export(
        export, events=1500, users=120, seed=5, end=datetime(2026, 11, 1, tzinfo=UTC), timezone="Asia/Kolkata"
    )
    whole, pieces = make_warehouse(), make_warehouse()
    one = load_export_files([str(export)], LoadOptions(nickname="CleverTap_Prod"), warehouse=whole)
    many = load_export_files(
        [str(export)], LoadOptions(nickname="CleverTap_Prod", batch_bytes=BATCH_BYTES), warehouse=pieces
    )
    assert not one.problems and not many.problems
    assert len(_batches(discover_files([str(export)]), BATCH_BYTES)) >= 8
    assert _snapshot(whole) == _snapshot(pieces)
    assert len(_tables(whole)) > 5


def test_a_context_column_comes_from_the_tables_own_non_null_values(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    utm = {"utm_source": "news", "utm_medium": "email", "utm_campaign": "fall"}
    visit = event("UTM Visited", 20240312090000, {"page": "/"}) | {"sessionProps": utm}
    view = event("Product Viewed", 20240312090100, {"sku": "a"}) | {"sessionProps": {"utm_source": None}}
    export_file("UTM Visited", [visit])
    export_file("Product Viewed", [view])

    summary = load_export_files([str(tmp_path / "export")], LoadOptions(nickname="CleverTap_Prod"), warehouse=warehouse)

    assert not summary.problems
    visited, viewed = columns(warehouse, "utm_visited"), columns(warehouse, "product_viewed")
    assert {"context_campaign_source", "context_campaign_medium", "context_campaign_name"} <= set(visited)
    assert not [name for name in viewed if name.startswith("context_campaign_")]
    assert query(warehouse, f"select context_campaign_source from {SCHEMA}.utm_visited") == [("news",)]
