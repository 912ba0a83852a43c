"""``ctsync config``: check the settings file, print or write its JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ctsync.cli_support import ConfigOption, JsonOption, WarehouseOption, err, out, print_json, run_command, styled

config_app = typer.Typer(
    name="config",
    help="The settings file (ctsync.yml): validate it, print its JSON Schema.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@config_app.command()
def validate(config: ConfigOption = None, warehouse: WarehouseOption = None, json_output: JsonOption = False) -> None:
    """Check every section of the settings file (exports, destinations, storage) and its top-level keys.

    Exit status: 0 no problems, 1 problems (each printed), 2 the file cannot be read.
    """
    from ctsync.config_check import ConfigReport, validate_settings_file

    def action() -> ConfigReport:
        return validate_settings_file(config, warehouse=warehouse)

    report = run_command(action, json_output=json_output)
    if json_output:
        print_json({"ok": report.ok, **{key: value for key, value in vars(report).items()}})
    else:
        for problem in report.problems:
            out().print(styled("red", "x", f" {problem}"))
        for note in report.notes:
            err().print(styled("yellow", "note:", f" {note}"))
        if report.ok:
            out().print(
                f"{report.path}: no problems ({len(report.exports)} export(s), "
                f"{len(report.destinations)} destination(s), {len(report.storage)} storage protocol(s))"
            )
        else:
            out().print(f"{report.path}: {len(report.problems)} problem(s)")
    if not report.ok:
        raise typer.Exit(1)


@config_app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to this file (e.g. ctsync.schema.json).")
    ] = None,
) -> None:
    """Print the JSON Schema of ctsync.yml (editors with a YAML language server use it for completion and checks)."""
    from ctsync.config_check import SCHEMA_MODELINE, settings_schema

    text = json.dumps(settings_schema(), indent=2) + "\n"
    if output is None:
        out().print(text, end="")
        return
    run_command(lambda: output.write_text(text, encoding="utf-8"))
    err().print(f"wrote {output}; point the settings file at it with a first line: {SCHEMA_MODELINE}")
