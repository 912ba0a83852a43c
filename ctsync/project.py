"""The project settings file (``ctsync.yml``): the one place it is read, and where the project files are."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ctsync.errors import CtsyncError

DEFAULT_CONFIG = "ctsync.yml"
PROJECT_DIR_VARIABLE = "CTSYNC_PROJECT_DIR"


def bundled_project() -> Path:
    """The dbt project, flows and settings file shipped with ctsync: ``ctsync/_project`` in an
    installed wheel, the repository root when ctsync runs from its source tree."""
    packaged = Path(__file__).resolve().parent / "_project"
    if (packaged / "dbt_project.yml").is_file():
        return packaged
    source = Path(__file__).resolve().parents[1]
    if (source / "dbt_project.yml").is_file():
        return source
    raise CtsyncError("ctsync's dbt project is missing from this installation: reinstall ctsync")


def default_config_path(environ: Mapping[str, str]) -> Path:
    """``CTSYNC_CONFIG``, else ``ctsync.yml`` in ``CTSYNC_PROJECT_DIR``, else ``ctsync.yml`` here."""
    named = environ.get("CTSYNC_CONFIG")
    if named:
        return Path(named)
    folder = environ.get(PROJECT_DIR_VARIABLE)
    return Path(folder) / DEFAULT_CONFIG if folder else Path(DEFAULT_CONFIG)


def destination_settings(
    name: str, config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Mapping[str, Any] | None:
    """The ``destinations.<name>`` entry of the settings file, or None (configure from the environment).

    The file is ``config_path``, else ``CTSYNC_CONFIG``, else ``ctsync.yml``; only a file named
    explicitly must exist.
    """
    named = config_path if config_path is not None else environ.get("CTSYNC_CONFIG") or None
    path = Path(named) if named is not None else default_config_path(environ)
    if not path.is_file():
        if named is not None:
            raise CtsyncError(f"the settings file {path} does not exist")
        return None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CtsyncError(f"cannot read the settings file {path}: {exc}") from None
    if not isinstance(document, dict):
        raise CtsyncError(f"{path}: the settings file must be a mapping with a destinations: section")
    destinations = document.get("destinations") or {}
    if not isinstance(destinations, dict):
        raise CtsyncError(f"{path}: destinations: must map destination names to their settings")
    entry = destinations.get(name)
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise CtsyncError(f"{path}: destinations.{name} must be a mapping (type: clevertap|segment|jsonl, ...)")
    return entry


def read_settings_document(
    config_path: str | os.PathLike[str] | None, environ: Mapping[str, str], *, named_must_exist: bool = True
) -> tuple[Path, dict[str, Any] | None]:
    """(path, parsed document) of the settings file; None when it does not exist (and, with
    ``named_must_exist``, was not named explicitly)."""
    named = config_path if config_path is not None else environ.get("CTSYNC_CONFIG") or None
    path = Path(named) if named is not None else default_config_path(environ)
    if not path.is_file():
        if named is not None and named_must_exist:
            raise CtsyncError(f"the settings file {path} does not exist")
        return path, None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CtsyncError(f"cannot read the settings file {path}: {_one_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise CtsyncError(f"{path}: the settings file must be a mapping (exports:, destinations:, storage:)")
    return path, document


def _one_line(text: str) -> str:
    return " ".join(text.split())
