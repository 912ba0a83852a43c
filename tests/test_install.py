"""ctsync as a new user meets it: the built wheel installed into a fresh virtualenv outside the
repository, ``ctsync init``, a load, a build with an audience of the user's own, a sync.

The fresh venv gets ctsync from the wheel alone; its dependencies are the test venv's (added to
its path with a ``.pth`` file) so nothing is downloaded for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
AUDIENCE = """\
{{ config(meta={'display_name': 'Big Spenders'}) }}

with

charged as (

    select * from {{ ref('stg_clevertap__charged') }}

),

final as (

    select user_id as person_id
    from charged
    where user_id is not null
    group by user_id
    having sum(amount) > 0

)

select * from final
"""

pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert completed.returncode == 0, f"{' '.join(args)} exited {completed.returncode}:\n{completed.stderr[-3000:]}"
    return completed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(REPOSITORY)],
        cwd=out,
        env=dict(os.environ),
    )
    (built,) = out.glob("ctsync-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A virtualenv outside the repository with ctsync installed from the wheel; its ``bin`` folder."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv, env=dict(os.environ))
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)]
    run(pip, cwd=venv, env=dict(os.environ))
    return venv / "bin"


def clean_environment(bin_dir: Path, warehouse: Path) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("CTSYNC_", "PYTHON", "VIRTUAL_ENV"))
    }
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
    environment["CTSYNC_WAREHOUSE"] = str(warehouse)
    return environment


def test_the_wheel_carries_the_dbt_project_and_the_flows(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ctsync/_project/dbt_project.yml",
        "ctsync/_project/profiles.yml",
        "ctsync/_project/prefect.yaml",
        "ctsync/_project/ctsync.yml",
        "ctsync/_project/macros/engage/publish.sql",
        "ctsync/_project/models/engage/engage_audience_memberships.sql",
        "ctsync/_project/seeds/clevertap_event_catalog.csv",
        "ctsync/_project/flows/pipeline.py",
        "ctsync/py.typed",
    ):
        assert required in names, f"{required} is not in the wheel"
    assert not any("__pycache__" in name for name in names)


def test_init_load_build_and_sync_from_a_fresh_install(fresh_venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "marketing"
    env = clean_environment(fresh_venv, project / "warehouse.duckdb")
    ctsync = str(fresh_venv / "ctsync")

    where = run([str(fresh_venv / "python"), "-c", "import ctsync; print(ctsync.__file__)"], tmp_path, env)
    assert where.stdout.startswith(str(fresh_venv.parent)), "ctsync must come from the wheel, not the repository"
    version = run([ctsync, "--version"], tmp_path, env)
    assert version.stdout.startswith("ctsync ")

    run([ctsync, "init", str(project)], tmp_path, env)
    for name in ("dbt_project.yml", "packages.yml", "profiles.yml", "prefect.yaml", "ctsync.yml", "flows/pipeline.py"):
        assert (project / name).is_file(), name
    refused = subprocess.run([ctsync, "init", str(project)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "overwrites nothing" in refused.stderr

    (project / "models" / "audiences" / "big_spenders.sql").write_text(AUDIENCE)
    run([ctsync, "sample", "demo/export", "--events", "3000", "--users", "150", "--seed", "4"], project, env)
    load = [ctsync, "load", "demo/export", "--nickname", "CleverTap_Prod", "--json"]
    loaded = json.loads(run(load, project, env).stdout)
    assert loaded["ok"] and loaded["totals"]["rows_loaded"] > 3000

    built = json.loads(run([ctsync, "build", "--json"], project, env, timeout=600).stdout)
    assert built["success"] is True
    assert built["audience_sizes"]["big_spenders"] > 0, "the project's own audience is built"
    assert built["audience_sizes"]["order_completed_last_30days"] > 0, "the package's examples too"

    synced = json.loads(run([ctsync, "sync", "--destination", "jsonl", "--json"], project, env).stdout)
    assert synced["status"] == "succeeded" and synced["sent"] > 0
    sent = [json.loads(line) for line in (project / "demo" / "identify.jsonl").read_text().splitlines()]
    big_spenders = [message for message in sent if "big_spenders" in message["traits"]]
    assert len(big_spenders) == built["audience_sizes"]["big_spenders"]

    listed = json.loads(run([ctsync, "exports", "list", "--json"], project, env).stdout)
    names = sorted(export["name"] for export in listed["exports"])
    assert names == ["clevertap-prod-events", "clevertap-prod-profiles"]

    checked = run([str(fresh_venv / "python"), "-m", "flows.deployments", "check"], project, env)
    assert "in bounds" in checked.stdout

    lineage = [str(fresh_venv / "python"), "-m", "dbt.cli.main", "ls", "--resource-type", "model", "--output", "name"]
    upstream = run([*lineage, "-s", "+engage_audience_memberships"], project, env).stdout.split()
    assert "big_spenders" in upstream and "order_completed_last_30days" in upstream
    assert "depends on the root project node" not in " ".join(upstream)
