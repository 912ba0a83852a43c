"""A build with nothing to read is refused before dbt runs: no empty audiences, no file created."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from ctsync.build import build_models
from ctsync.cli import app
from ctsync.errors import CtsyncError
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.models.conftest import TIMEZONE, BuiltSample, run_dbt
from tests.postgres import fresh_database


def build_output(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["build", *args])
    return result.exit_code, " ".join(result.output.split())


def engage_tables(warehouse: Path) -> list[str]:
    """What a build would have published: the tables and views of the engage schema."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute("select table_name from information_schema.tables where table_schema = 'engage'").fetchall()
        return [str(row[0]) for row in rows]
    finally:
        con.close()


def test_a_mistyped_warehouse_path_is_refused_and_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "warehose.duckdb"
    code, output = build_output("--warehouse", str(typo))
    assert code == 2
    assert f"the warehouse {typo} does not exist" in output and "ctsync load" in output
    assert not typo.exists() and list(tmp_path.iterdir()) == []


def test_a_warehouse_without_clevertap_data_is_refused(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    code, output = build_output("--warehouse", str(warehouse))
    assert code == 2
    assert "no CleverTap data" in output and "ctsync load PATH --nickname NAME" in output
    assert engage_tables(warehouse) == [], "nothing is built or published"


def test_a_source_with_profiles_only_is_refused(built_sample: BuiltSample, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    profiles = [path for path in built_sample.export.iterdir() if not path.name.endswith(".json.gz")]
    summary = load_export_files(
        [str(path) for path in profiles], LoadOptions(nickname="MyApp", timezone=TIMEZONE), warehouse=str(warehouse)
    )
    assert summary.files and not summary.failed
    with pytest.raises(CtsyncError, match=r"the CleverTap schema\(s\) myapp .* hold no event table yet"):
        build_models(warehouse=str(warehouse))
    assert engage_tables(warehouse) == []


@pytest.mark.parametrize(
    ("named", "message"),
    [
        (None, "no CleverTap data in the warehouse"),
        (["clevertap_prd"], "var clevertap_schemas names clevertap_prd, which hold(s) no event table"),
    ],
)
def test_dbt_build_run_directly_fails_without_clevertap_data(
    tmp_path: Path, named: list[str] | None, message: str
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    variables = {"clevertap_schemas": named} if named else None
    build = run_dbt(["build"], warehouse=warehouse, work=tmp_path, extra_vars=variables)
    assert not build.success
    assert message in "\n".join(build.messages)
    assert engage_tables(warehouse) == []


@pytest.mark.postgres
def test_a_postgres_database_without_clevertap_data_is_refused() -> None:
    with fresh_database() as url:
        with pytest.raises(CtsyncError, match="no CleverTap data in postgresql://"):
            build_models(warehouse=url)
