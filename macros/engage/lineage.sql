{#-
    The audience (or trait) model names the engage catalogs `ref` (macros/engage/model_names.sql
    in ctsync's project; a project using ctsync as a package overrides it through dispatch, in
    its macros/ctsync_engage_models.sql). Called when dbt parses, so it returns a fixed list.
-#}
{% macro engage_model_names(kind) -%}
    {{ return(adapter.dispatch('engage_model_names', 'ctsync')(kind)) }}
{%- endmacro %}

{#- `-- depends_on:` lines for every listed model of `kind`: the lineage of the engage models. -#}
{% macro engage_model_refs(kind) -%}
    {%- for model_name in ctsync.engage_model_names(kind) %}
-- depends_on: {{ ref(model_name) }}
    {%- endfor %}
{%- endmacro %}

{#-
    on-run-start: warn when a model of models/audiences/ or models/traits/ is missing from that
    list (it is published all the same, but `dbt build -s +engage_audience_memberships` and dbt
    docs leave it out). `ctsync build` rewrites the list before dbt runs.
-#}
{% macro check_engage_lineage() -%}
    {%- if execute -%}
        {%- for kind, catalog in [('audience', 'engage_audiences'), ('trait', 'engage_traits')] -%}
            {%- set parents = [] -%}
            {%- for node in graph.nodes.values()
                if node.resource_type == 'model' and node.package_name == 'ctsync' and node.name == catalog -%}
                {%- do parents.extend(node.depends_on.nodes) -%}
            {%- endfor -%}
            {%- set missing = [] -%}
            {%- for node in ctsync.engage_nodes(kind) if node.unique_id not in parents -%}
                {%- do missing.append(node.name) -%}
            {%- endfor -%}
            {%- if missing -%}
                {%- do exceptions.warn(
                    kind ~ " model(s) " ~ (missing | join(', ')) ~ " are published but not in the lineage of the"
                    ~ " engage models (dbt build -s +engage_audience_memberships leaves them out): run `ctsync build`,"
                    ~ " which lists them in " ~ ('macros/engage/model_names.sql' if project_name == 'ctsync'
                    else 'macros/ctsync_engage_models.sql')
                ) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
