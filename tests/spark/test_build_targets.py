"""``ctsync build --target spark``: which targets build in a catalog ctsync does not open, and the guard
that refuses a build with nothing to read there (the successful build is the session's, conftest.py)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ctsync.build import _run_child, build_models, profile_target_type
from ctsync.cli import app
from ctsync.errors import CtsyncError
from tests.models.conftest import PROJECT, copy_project
from tests.spark.conftest import require_spark, spark_environment


def test_the_target_s_adapter_comes_from_the_project_s_profile(tmp_path: Path) -> None:
    assert profile_target_type(PROJECT, "spark") == "spark"
    assert profile_target_type(PROJECT, "duckdb") == "duckdb"
    assert profile_target_type(PROJECT, "nope") is None
    (tmp_path / "dbt_project.yml").write_text(yaml.safe_dump({"name": "mine", "profile": "mine"}))
    (tmp_path / "profiles.yml").write_text(
        yaml.safe_dump({"mine": {"target": "lakehouse", "outputs": {"lakehouse": {"type": "databricks"}}}})
    )
    assert profile_target_type(tmp_path, "lakehouse") == "databricks"


def test_an_unknown_target_is_refused_naming_the_targets(tmp_path: Path) -> None:
    with pytest.raises(
        CtsyncError, match=r"unknown dbt target 'nope': profiles\.yml has the targets duckdb, postgres and spark"
    ):
        build_models(target="nope", warehouse=str(tmp_path / "warehouse.duckdb"))


@pytest.mark.spark
def test_a_spark_catalog_without_clevertap_data_is_refused_before_the_build(tmp_path: Path) -> None:
    """An empty catalog (a fresh metastore): exit 2 and what to do, and no model built. --warehouse names a
    file that does not exist: it is not read (a DuckDB build would refuse it)."""
    require_spark()
    project = copy_project(tmp_path / "project")
    catalog = tmp_path / "catalog"
    environment = {**spark_environment(catalog), "CTSYNC_PROJECT_DIR": str(project)}

    result = CliRunner().invoke(
        app, ["build", "--target", "spark", "--warehouse", str(tmp_path / "none.duckdb"), "--json"], env=environment
    )

    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert "no CleverTap data in the catalog of target spark" in error
    assert "ctsync lake register --nickname NAME" in error
    assert not list((catalog / "spark-warehouse").glob("*.db")), "nothing is built"
    assert not (tmp_path / "none.duckdb").exists()


def test_the_target_comes_from_ctsync_dbt_target(tmp_path: Path) -> None:
    assert "CTSYNC_DBT_TARGET" in CliRunner().invoke(app, ["build", "--help"], env={"COLUMNS": "200"}).output
    result = CliRunner().invoke(
        app, ["build", "--warehouse", str(tmp_path / "warehouse.duckdb")], env={"CTSYNC_DBT_TARGET": "nope"}
    )
    assert result.exit_code == 2
    assert "unknown dbt target 'nope'" in " ".join(result.output.split())


def test_a_child_that_writes_much_to_stderr_does_not_stall_the_build(tmp_path: Path) -> None:
    """Spark's JVM logs to the child's stderr: more than a pipe holds must not block it (nor the build)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.stderr.write('spark says hello\\n' * 20_000)\n")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT)])}
    done: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: done.append(_run_child(["--version"], environment, None)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert done, "the build's child stalled on a full stderr pipe"
