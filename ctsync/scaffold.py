"""``ctsync init DIR``: a project folder of one's own that uses ctsync's dbt package, flows and settings.

The folder is a dbt project that depends on ctsync's (shipped with ctsync, see
:func:`ctsync.project.bundled_project`) and adds audiences and computed traits in its own
``models/audiences/`` and ``models/traits/``; next to it the settings file, the Prefect
deployments and the flows they run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ctsync.errors import CtsyncError
from ctsync.lineage import write_engage_model_names
from ctsync.project import bundled_project

COPIED = ("ctsync.yml", "ctsync.schema.json", "profiles.yml", "prefect.yaml")
"""Files taken as they are from ctsync's own project (the settings match the deployments)."""

DBT_PROJECT = """\
# {name}: a dbt project on top of ctsync's dbt package (packages.yml). ctsync's models
# (staging, identity, its example audiences and traits, the engage schema the sync reads)
# come from the package; add audiences to models/audiences/ and traits to models/traits/.
# `ctsync build` (or `dbt deps && dbt build`) builds both; profiles.yml is in this folder.
name: {name}
version: "1.0.0"
config-version: 2
profile: ctsync

model-paths: ["models"]
macro-paths: ["macros"]
seed-paths: ["seeds"]
test-paths: ["tests"]
target-path: target
clean-targets: ["target", "logs", "dbt_packages"]

flags:
  send_anonymous_usage_stats: false
  # ctsync's models find their own models first; its engage catalogs also ref yours (the lineage).
  require_ref_searches_node_package_before_root: true

# ctsync's macros look here first: macros/ctsync_engage_models.sql lists this project's
# audiences and traits (and ctsync's) for the engage models' lineage; `ctsync build` keeps it current.
dispatch:
  - macro_namespace: ctsync
    search_order: ["{name}", "ctsync"]
  # dbt's own macros: ctsync's seed loader for Spark (dbt-spark's does not escape values).
  - macro_namespace: dbt
    search_order: ["{name}", "ctsync", "dbt"]

vars:
  # The CleverTap schemas to read (empty: every schema `ctsync load` wrote) and the instant
  # memberships are computed at (empty: the start of the run). See ctsync's docs/dbt.md.
  clevertap_schemas: []
  as_of: ""

models:
  {name}:
    audiences:
      # One model per audience: it selects its members (a person_id column) and names the
      # audience in its meta; the hook publishes them to the engage schema.
      +materialized: table
      +post-hook: "{{{{ ctsync.publish_engage_model('audience') }}}}"
    traits:
      +materialized: table
      +post-hook: "{{{{ ctsync.publish_engage_model('trait') }}}}"
  ctsync:
    # ctsync's example audiences and traits; set +enabled: false to keep only your own.
    audiences:
      +enabled: true
    traits:
      +enabled: true
"""

PACKAGES = """\
# ctsync's dbt package, shipped with the installed ctsync (`ctsync init` wrote this path).
packages:
  - local: {path}
"""

SCHEMA_MACRO = """\
{#- The engage schema is exactly `engage` (where the sync reads), as in ctsync's own project. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ ctsync.generate_schema_name(custom_schema_name, node) }}
{%- endmacro %}
"""

AUDIENCES_README = """\
# Audiences

One SQL file per audience: it selects one row per member with a `person_id` column, and
names the audience in its meta (the key synced is the snake_case of the display name):

```sql
{{ config(meta={'display_name': 'Big Spenders'}) }}

with

charged as (

    select * from {{ ref('stg_clevertap__charged') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

final as (

    select
        coalesce(charged.user_id, anonymous_ids.person_id) as person_id
    from charged
    left join anonymous_ids
        on charged.source_relation = anonymous_ids.source_relation
        and charged.anonymous_id = anonymous_ids.anonymous_id
    where {{ ctsync.in_last_days('charged.occurred_at', 30) }}
    group by 1
    having sum(charged.amount) > 1000

)

select * from final
where person_id is not null
```

Computed traits go in models/traits/ the same way, returning `person_id` and `value`, with
`value_type` (number, string, boolean, timestamp) in the meta.
"""

GITIGNORE = """\
target/
logs/
dbt_packages/
*.duckdb
*.duckdb.wal
__pycache__/
"""


@dataclass
class Scaffold:
    directory: Path
    name: str
    written: list[str] = field(default_factory=list)


def project_name(directory: Path) -> str:
    """A dbt project name for the folder: its name in snake_case, never ``ctsync`` (the package's)."""
    name = re.sub(r"[^a-z0-9]+", "_", directory.resolve().name.lower()).strip("_") or "analytics"
    if name[0].isdigit():
        name = f"project_{name}"
    return "ctsync_project" if name == "ctsync" else name


def init_project(directory: Path, *, name: str | None = None) -> Scaffold:
    """Write a project into ``directory`` (created if needed); refuses to overwrite any file."""
    source = bundled_project()
    name = name or project_name(directory)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or name == "ctsync":
        raise CtsyncError(
            f"{name!r} cannot name a dbt project: use lowercase letters, digits and _ (and not ctsync, the package)"
        )
    if directory.exists() and not directory.is_dir():
        raise CtsyncError(f"{directory} is a file: give a folder for the project")
    files: dict[str, str] = {
        "dbt_project.yml": DBT_PROJECT.format(name=name),
        "packages.yml": PACKAGES.format(path=_yaml_string(str(source))),
        "macros/generate_schema_name.sql": SCHEMA_MACRO,
        "models/audiences/README.md": AUDIENCES_README,
        "models/traits/.gitkeep": "",
        ".gitignore": GITIGNORE,
    }
    for copied in COPIED:
        files[copied] = (source / copied).read_text(encoding="utf-8")
    flows = sorted((source / "flows").glob("*.py"))
    for flow in flows:
        files[f"flows/{flow.name}"] = flow.read_text(encoding="utf-8")
    existing = sorted(relative for relative in files if (directory / relative).exists())
    if existing:
        raise CtsyncError(
            f"{directory} already has {', '.join(existing)}: ctsync init writes a new project and overwrites nothing"
        )
    scaffold = Scaffold(directory=directory, name=name)
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        scaffold.written.append(relative)
    listed = write_engage_model_names(directory)
    if listed is not None:
        scaffold.written.append(listed.relative_to(directory).as_posix())
    return scaffold


def _yaml_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
