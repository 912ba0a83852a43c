"""A young warehouse (only App Launched loaded, no profiles yet) still builds, and documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.models.conftest import AS_OF, NICKNAME, SCHEMA, TIMEZONE, query, run_dbt


@pytest.fixture(scope="module")
def young(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dbt-young")
    export = root / "export"
    write_sample_export(export, events=2_000, users=200, seed=5, end=AS_OF, timezone=TIMEZONE, profiles=False)
    warehouse = root / "warehouse.duckdb"
    options = LoadOptions(nickname=NICKNAME, timezone=TIMEZONE, events=frozenset({"App Launched"}))
    load_export_files([str(export)], options, warehouse=str(warehouse))
    return warehouse, root


def test_build_passes_with_missing_tables(young: tuple[Path, Path]) -> None:
    warehouse, work = young
    tables = {
        name
        for (name,) in query(
            warehouse, f"select table_name from information_schema.tables where table_schema = '{SCHEMA}'"
        )
    }
    assert "app_launched" in tables and not tables & {"charged", "identifies", "users", "app_installed"}

    build = run_dbt(["build"], warehouse=warehouse, work=work)
    assert build.success, build.failures()

    counts = dict(
        query(
            warehouse,
            """
            select 'charged', count(*) from analytics.stg_clevertap__charged
            union all select 'charged_items', count(*) from analytics.stg_clevertap__charged_items
            union all select 'users', count(*) from analytics.stg_clevertap__users
            union all select 'app_launched', count(*) from analytics.stg_clevertap__app_launched
            union all select 'members', count(*) from engage.engage_audience_memberships
                where audience_key in ('order_completed_last_30days', 'dormant_users')
            union all select 'versions', count(*) from engage.engage_computed_traits
                where trait_key = 'last_app_version'
            """,
        )
    )
    assert counts["charged"] == counts["charged_items"] == counts["users"] == counts["members"] == 0
    assert counts["app_launched"] > 0 and counts["versions"] > 0

    docs = run_dbt(["docs", "generate"], warehouse=warehouse, work=work)
    assert docs.success, docs.failures()
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    undocumented = [
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and not node["description"].strip()
    ]
    assert not undocumented
    assert all(source["description"] for source in manifest["sources"].values())
