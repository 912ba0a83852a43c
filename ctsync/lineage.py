"""The audience and trait models the engage models depend on, written where dbt reads them when it parses.

dbt learns a model's parents from its ``ref()`` calls when it parses the project, before it
knows which models exist; so the engage catalogs ``ref`` the models that one macro lists, and
this module keeps that macro current from the files under ``models/audiences/`` and
``models/traits/`` (``ctsync build`` and ``ctsync init`` call it). With it, ``dbt build -s
+engage_audience_memberships`` selects every audience, and dbt docs draw them feeding the
engage outputs. A project of one's own overrides ctsync's list through ``dispatch`` (the
macro of ctsync's own project lists its examples).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ctsync.errors import CtsyncError
from ctsync.project import bundled_project

PACKAGE = "ctsync"
FOLDERS = {"audience": "audiences", "trait": "traits"}
OWN_FILE = Path("macros") / "engage" / "model_names.sql"
"""Where ctsync's own project lists its models."""
PROJECT_FILE = Path("macros") / "ctsync_engage_models.sql"
"""Where a project that uses ctsync as a package lists its models and ctsync's."""
_DISABLED = re.compile(r"config\s*\([^)]*\benabled\s*=\s*false", re.IGNORECASE | re.DOTALL)

TEMPLATE = """\
{{#-
    The audience and trait models the engage models depend on (their `ref`s, for dbt's
    lineage: `dbt build -s +engage_audience_memberships` selects them all). Written by
    `ctsync build` from the files under models/audiences/ and models/traits/; a model missing
    here is still published, and the build warns until this file is written again.
-#}}
{{% macro default__engage_model_names(kind) -%}}
    {{%- set names = {{
        'audience': [{audiences}],
        'trait': [{traits}],
    }} -%}}
    {{{{ return(names[kind]) }}}}
{{%- endmacro %}}
"""


def engage_model_names(project: Path) -> dict[str, list[str]]:
    """The enabled audience and trait models a build of ``project`` has, by kind, sorted."""
    document = _dbt_project(project)
    names: dict[str, set[str]] = {kind: set() for kind in FOLDERS}
    for kind, folder in FOLDERS.items():
        names[kind] |= _models_in(project, document, folder)
    if document.get("name") != PACKAGE:
        package = _installed_package(project)
        package_document = _dbt_project(package)
        for kind, folder in FOLDERS.items():
            if _folder_enabled(document, folder):
                names[kind] |= _models_in(package, package_document, folder)
    return {kind: sorted(found) for kind, found in names.items()}


def write_engage_model_names(project: Path) -> Path | None:
    """Rewrite the list of ``project`` when it changed; the file written, or None."""
    names = engage_model_names(project)
    own = _dbt_project(project).get("name") == PACKAGE
    path = project / (OWN_FILE if own else PROJECT_FILE)
    text = render(names)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def render(names: dict[str, list[str]]) -> str:
    return TEMPLATE.format(
        audiences=", ".join(f"'{name}'" for name in names["audience"]),
        traits=", ".join(f"'{name}'" for name in names["trait"]),
    )


def _dbt_project(folder: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load((folder / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CtsyncError(f"cannot read {folder / 'dbt_project.yml'}: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        raise CtsyncError(f"{folder / 'dbt_project.yml'} is not a dbt project file")
    return document


def _models_in(project: Path, document: dict[str, Any], folder: str) -> set[str]:
    found: set[str] = set()
    for model_path in document.get("model-paths") or ["models"]:
        for path in sorted((project / str(model_path) / folder).rglob("*.sql")):
            if not _DISABLED.search(path.read_text(encoding="utf-8", errors="replace")):
                found.add(path.stem)
    return found


def _installed_package(project: Path) -> Path:
    installed = project / "dbt_packages" / PACKAGE
    return installed if (installed / "dbt_project.yml").is_file() else bundled_project()


def _folder_enabled(document: dict[str, Any], folder: str) -> bool:
    """Whether the project leaves ctsync's example folder enabled (``models: ctsync: audiences: +enabled``)."""
    config = ((document.get("models") or {}).get(PACKAGE) or {}).get(folder) or {}
    for key in ("+enabled", "enabled"):
        if key in config:
            return config[key] is not False and str(config[key]).strip().lower() != "false"
    return True
