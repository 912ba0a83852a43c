"""What every ``ctsync`` command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from ctsync.errors import CtsyncError

T = TypeVar("T")


def run_command(action: Callable[[], T]) -> T:
    """Run a command body; a user-fixable error prints its message and exits with status 2."""
    try:
        return action()
    except CtsyncError as exc:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
