"""The ``ctsync`` command behaves like a well-made CLI: bad usage is one line and a non-zero exit
(never a traceback), user text is printed as given, options name their environment variables,
``--version``, ``--json`` for scripts, shell completion, unwrapped output outside a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from ctsync import __version__
from ctsync.cli import app
from ctsync.cli_support import run_command
from ctsync.exports.sample import write_sample_export

CTSYNC = Path(sys.executable).parent / "ctsync"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with a small sample export loaded (folder: the warehouse's parent)."""
    folder = tmp_path_factory.mktemp("loaded")
    write_sample_export(folder / "export", events=300, users=30, seed=3)
    result = invoke(["load", str(folder / "export"), "--nickname", "CleverTap_Prod"], folder)
    assert result.exit_code == 0, result.output
    return folder / "warehouse.duckdb"


def invoke(args: list[str], folder: Path, **env: str | None) -> Result:
    environment: dict[str, str | None] = {
        "CTSYNC_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "CTSYNC_CONFIG": None,
        "CTSYNC_PROJECT_DIR": str(folder),
    }
    environment.update(env)
    return CliRunner().invoke(app, args, env=environment)


# What a user may get wrong, and a piece of the one line that tells them what to do.
BAD_USAGES: list[tuple[str, list[str], dict[str, str | None], str]] = [
    ("no such option", ["load", "x", "--nickname", "a", "--colour"], {}, "No such option"),
    ("missing argument", ["load"], {}, "Missing argument"),
    ("missing option", ["sync"], {}, "Missing option"),
    ("not a number", ["status", "--limit", "many"], {}, "--limit"),
    ("unknown command", ["lod"], {}, "No such command"),
    (
        "workspace region apac",
        ["load", "{folder}", "--nickname", "a"],
        {"CTSYNC_WORKSPACE_REGION": "apac"},
        "CTSYNC_WORKSPACE_REGION=apac",
    ),
    ("glob matching nothing", ["load", "nothing-[a-z]*", "--nickname", "a"], {}, "nothing-[a-z]*"),
    ("nickname without letters", ["load", "{folder}", "--nickname", "[/]"], {}, "'[/]'"),
    ("unknown destination", ["sync", "-d", "x[/]y", "--warehouse", "{loaded}"], {}, "'x[/]y'"),
    ("destination without settings", ["sync", "-d", "clevertap", "--warehouse", "{loaded}"], {}, "CLEVERTAP_"),
    ("sample into a file", ["sample", "{file}", "--events", "5"], {}, "is a file"),
    ("bad timezone", ["load", "{folder}", "--nickname", "a", "--timezone", "Mars/Base"], {}, "Mars/Base"),
    ("bad --as-of", ["build", "--as-of", "soon"], {}, "--as-of must be"),
    ("no warehouse to build", ["build", "--warehouse", "{folder}/missing.duckdb"], {}, "does not exist"),
    ("no warehouse to explain", ["explain", "u1", "--warehouse", "{folder}/missing.duckdb"], {}, "no warehouse"),
    ("missing settings file", ["exports", "validate", "--config", "{folder}/nope.yml"], {}, "does not exist"),
    ("bad export status", ["exports", "list", "--status", "nope"], {}, "--status must be"),
    (
        "object storage without credentials",
        ["load", "s3://ctsync-no-such-bucket/exports/", "--nickname", "a"],
        {
            "AWS_ACCESS_KEY_ID": None,
            "AWS_SECRET_ACCESS_KEY": None,
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        },
        "AWS_ACCESS_KEY_ID",
    ),
    (
        "postgres not answering",
        ["status", "--warehouse", "postgresql://nobody@127.0.0.1:9/db"],
        {},
        "cannot open the warehouse",
    ),
]


@pytest.mark.parametrize(("case", "args", "env", "expected"), BAD_USAGES, ids=[case[0] for case in BAD_USAGES])
def test_bad_usage_is_one_line_and_a_non_zero_exit(
    case: str, args: list[str], env: dict[str, str | None], expected: str, loaded: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    fill = {"{folder}": str(tmp_path), "{loaded}": str(loaded), "{file}": str(tmp_path / "a-file")}
    argv = [next((arg.replace(k, v) for k, v in fill.items() if k in arg), arg) for arg in args]

    result = invoke(argv, tmp_path, **env)

    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert expected in result.output, result.output
    if "Usage:" not in result.output:  # not click's own usage message: our one line
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_a_locked_warehouse_is_one_line(loaded: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(loaded)!r}); print(1); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        result = invoke(["build", "--warehouse", str(loaded)], loaded.parent)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another process" in lines[0], result.stderr


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback() -> None:
    def broken() -> None:
        raise RuntimeError("a bug\nwith a second line")

    command = typer.Typer()

    @command.command()
    def crash() -> None:
        run_command(broken)

    quiet = CliRunner().invoke(command, [])
    assert quiet.exit_code == 1
    assert quiet.stderr == (
        "error: unexpected RuntimeError: a bug | with a second line (set CTSYNC_DEBUG=1 for the traceback)\n"
    )
    loud = CliRunner().invoke(command, [], env={"CTSYNC_DEBUG": "1"})
    assert loud.exit_code == 1
    assert "Traceback" in loud.stderr and "RuntimeError: a bug" in loud.stderr


def test_the_workspace_region_is_read_in_any_case(tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_sample_export(export, events=20, users=5, seed=2)
    args = ["load", str(export), "--nickname", "Eu", "--region", "eu"]
    result = invoke(args, tmp_path, CTSYNC_WORKSPACE_REGION="EU")
    assert result.exit_code == 0, result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"ctsync {__version__}"


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (["load"], ["CTSYNC_WAREHOUSE"]),
        (["build"], ["CTSYNC_WAREHOUSE"]),
        (["sync"], ["CTSYNC_WAREHOUSE", "CTSYNC_CONFIG", "CTSYNC_MASS_CHANGE_SHARE", "CTSYNC_KEEP_SENT_DAYS"]),
        (["status"], ["CTSYNC_WAREHOUSE"]),
        (["exports", "list"], ["CTSYNC_WAREHOUSE", "CTSYNC_CONFIG"]),
    ],
)
def test_help_names_the_environment_variables(command: list[str], variables: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    for variable in variables:
        assert variable in result.output, f"{variable} missing from `ctsync {' '.join(command)} --help`"


def test_options_are_read_from_their_environment_variables(loaded: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--json"], env={"CTSYNC_WAREHOUSE": str(loaded)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warehouse"].endswith(loaded.name)


def test_user_text_is_printed_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    write_sample_export(folder, events=20, users=5, seed=1)
    (folder / "notes-[red].csv").write_text("a,b\n1,2\n")
    warehouse = tmp_path / "w.duckdb"
    result = invoke(["load", str(folder), "--nickname", "Prod[/]"], tmp_path, CTSYNC_WAREHOUSE=str(warehouse))
    assert result.exit_code == 1, result.output  # the CSV file is refused
    assert f"{folder}/notes-[red].csv" in result.stderr
    assert result.stdout.startswith(f"prod in {warehouse}")


def test_output_is_not_wrapped_outside_a_terminal(tmp_path: Path) -> None:
    folder = tmp_path / ("a-very-long-folder-name-" * 8)
    folder.mkdir()
    (folder / "not-an-export.csv").write_text("a,b\n")
    result = invoke(["load", str(folder), "--nickname", "x"], tmp_path)
    assert result.exit_code == 1
    line = next(line for line in result.stderr.splitlines() if "not-an-export.csv" in line)
    assert str(folder) in line and len(line) > 200


def test_json_output(loaded: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_sample_export(export, events=50, users=5, seed=9)
    warehouse = tmp_path / "w.duckdb"
    load = invoke(["load", str(export), "--nickname", "Json", "--json"], tmp_path, CTSYNC_WAREHOUSE=str(warehouse))
    assert load.exit_code == 0, load.output
    document = json.loads(load.stdout)
    assert document["schema"] == "json" and document["ok"] is True and document["reconciles"] is True
    assert document["totals"]["rows_loaded"] == sum(document["new_rows"].values()) > 0
    assert all(item["status"] == "loaded" for item in document["file_results"])

    status = invoke(["status", "--json"], tmp_path, CTSYNC_WAREHOUSE=str(warehouse))
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["loads"][0]["schema"] == "json"

    listed = invoke(["exports", "list", "--json"], tmp_path, CTSYNC_WAREHOUSE=str(warehouse))
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["exports"] == []

    failed = invoke(["build", "--json", "--warehouse", str(tmp_path / "missing.duckdb")], tmp_path)
    assert failed.exit_code == 2
    assert "does not exist" in json.loads(failed.stdout)["error"]


def test_shell_completion_script() -> None:
    completed = subprocess.run(
        [str(CTSYNC), "--show-completion", "bash"], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "_CTSYNC_COMPLETE" in completed.stdout
    completing = subprocess.run(
        [str(CTSYNC)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "_CTSYNC_COMPLETE": "complete_bash", "COMP_WORDS": "ctsync exp", "COMP_CWORD": "1"},
    )
    assert "exports" in completing.stdout and "explain" in completing.stdout


def test_the_project_folder_from_the_environment(tmp_path: Path) -> None:
    """``CTSYNC_PROJECT_DIR`` finds ctsync.yml (and the dbt project) from any working directory."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "ctsync.yml").write_text(
        "exports:\n"
        "  - name: events\n"
        "    nickname: CleverTap_Prod\n"
        f"    location: {tmp_path / 'export'}\n"
        "    data_type: all_events\n"
        "    frequency: {recurring: {every_hours: 6}}\n"
    )
    result = CliRunner().invoke(
        app,
        ["exports", "list", "--json"],
        env={"CTSYNC_PROJECT_DIR": str(project), "CTSYNC_CONFIG": None, "CTSYNC_WAREHOUSE": str(tmp_path / "w.duckdb")},
    )
    assert result.exit_code == 0, result.output
    assert [export["name"] for export in json.loads(result.stdout)["exports"]] == ["events"]
