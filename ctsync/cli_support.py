"""What every ``ctsync`` command shares: consoles, shared options, errors, ``--json`` output.

User text (file names, nicknames, globs, dbt's log, error messages) is never read as Rich
markup: the consoles have markup off, and colour is given with ``Text`` styles. Outside a
terminal nothing is wrapped or cut to 80 columns.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import Progress, ProgressColumn
from rich.text import Text

from ctsync import __version__
from ctsync.errors import CtsyncError

T = TypeVar("T")

EXIT_PROBLEM = 2
"""Exit status of an error the user can fix (settings, arguments, files, credentials)."""

WIDE = 100_000
"""Width of a console that is not a terminal: lines are never wrapped, tables never cut."""

DEBUG_VARIABLE = "CTSYNC_DEBUG"
"""Set to 1 to see the traceback of an unexpected error."""


def console(*, stderr: bool = False) -> Console:
    """A console that prints text as given (no markup, no highlighting); unwrapped outside a terminal."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, markup=False, highlight=False, emoji=False)
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, width=WIDE, soft_wrap=True)


def out() -> Console:
    return console()


def err() -> Console:
    return console(stderr=True)


def progress_bar(*columns: str | ProgressColumn) -> Progress:
    """A progress bar on stderr while work runs, gone when it ends; nothing at all outside a terminal."""
    console = err()
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def styled(style: str, label: str, rest: str = "") -> Text:
    """``label`` in ``style`` followed by ``rest`` as plain text (never markup)."""
    return Text.assemble((label, style), rest)


def print_error(message: str) -> None:
    """One line on stderr: ``error: <message>``."""
    err().print(styled("bold red", "error:", " " + message))


def fail(message: str, code: int = EXIT_PROBLEM) -> NoReturn:
    print_error(message)
    raise typer.Exit(code)


# -- shared options -----------------------------------------------------------------------

WarehouseOption = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        envvar="CTSYNC_WAREHOUSE",
        show_envvar=True,
        help="DuckDB file, duckdb:/// URL or postgresql:// URL [default: warehouse.duckdb].",
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        envvar="CTSYNC_CONFIG",
        show_envvar=True,
        help="Project settings file (exports:, destinations:, storage:) [default: ctsync.yml].",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document on stdout instead of text (for scripts, jq)."),
]


def version_callback(value: bool) -> None:
    if value:
        out().print(f"ctsync {__version__}")
        raise typer.Exit()


VersionOption = Annotated[
    bool,
    typer.Option("--version", callback=version_callback, is_eager=True, help="Print ctsync's version and exit."),
]


def use_storage_settings(config: str | None) -> list[str]:
    """Apply the settings file's ``storage:`` section (Prefect blocks read through the Prefect API)."""
    from ctsync.prefect_api import cli_read_block
    from ctsync.storage import configure_object_storage, load_storage_settings

    return configure_object_storage(load_storage_settings(config, os.environ), cli_read_block)


# -- running a command ---------------------------------------------------------------------


def run_command(action: Callable[[], T], *, json_output: bool = False) -> T:
    """Run a command body. Any error ends in one line on stderr and a non-zero exit, never a traceback:

    - :class:`CtsyncError` (a problem the user can fix): its message, exit 2;
    - missing object-storage credentials, an unreadable or existing path: what to do, exit 2;
    - anything else: its type and message, exit 1 (``CTSYNC_DEBUG=1`` shows the traceback).

    With ``json_output`` the error is also printed on stdout as ``{"error": ..., "exit_code": ...}``.
    """
    try:
        return action()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        print_error("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        message, code = describe_error(exc)
        if os.environ.get(DEBUG_VARIABLE) == "1":
            traceback.print_exc(file=sys.stderr)
        if json_output:
            print_json({"error": message, "exit_code": code})
        print_error(message)
        raise typer.Exit(code) from None


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit status) for an exception that ends a command."""
    if isinstance(exc, CtsyncError):
        return _one_line(str(exc)), EXIT_PROBLEM
    credentials = _credentials_error(exc)
    if credentials is not None:
        return credentials, EXIT_PROBLEM
    if isinstance(exc, FileExistsError):
        return f"{exc.filename} already exists: choose another path or remove it first", EXIT_PROBLEM
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}", EXIT_PROBLEM
    if isinstance(exc, FileNotFoundError):
        return f"no such file or folder: {exc.filename or exc}", EXIT_PROBLEM
    if isinstance(exc, NotADirectoryError | IsADirectoryError):
        return f"{exc.strerror}: {exc.filename}", EXIT_PROBLEM
    name = type(exc).__name__
    return (
        f"unexpected {name}: {_one_line(str(exc)) or 'no message'} (set {DEBUG_VARIABLE}=1 for the traceback)",
        1,
    )


def _credentials_error(exc: BaseException) -> str | None:
    """A message for object storage refusing us for want of credentials, or None."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError", "DefaultCredentialsError"):
            return (
                f"object storage refused the request: {_one_line(str(seen))}. Set credentials in the environment "
                "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) or name a Prefect block in the "
                "storage: section of ctsync.yml"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


# -- --json ------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dataclasses, mappings, sequences, times, paths and enums as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def print_json(document: Any) -> None:
    """One JSON document on stdout, unwrapped, whatever the terminal."""
    sys.stdout.write(json.dumps(jsonable(document), ensure_ascii=False) + "\n")
    sys.stdout.flush()
