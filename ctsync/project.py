"""The project settings file (``ctsync.yml``): the one place its ``destinations:`` section is read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ctsync.errors import CtsyncError

DEFAULT_CONFIG = "ctsync.yml"


def destination_settings(
    name: str, config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Mapping[str, Any] | None:
    """The ``destinations.<name>`` entry of the settings file, or None (configure from the environment).

    The file is ``config_path``, else ``CTSYNC_CONFIG``, else ``ctsync.yml``; only a file named
    explicitly must exist.
    """
    named = config_path if config_path is not None else environ.get("CTSYNC_CONFIG") or None
    path = Path(named if named is not None else DEFAULT_CONFIG)
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
