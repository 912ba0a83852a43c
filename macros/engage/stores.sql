{#-
    Published memberships and trait values live in two tables of the engage schema,
    `_audience_members` and `_trait_values`, one slice per key. Each audience or trait
    model writes its own slice right after it is built (macros/engage/publish.sql); the
    engage views join them with the catalogs and people. This is how every model in the
    folder reaches the engage schema although dbt cannot know the list when it parses
    the project: no model has to ref them all, and a run never reads an audience table
    before it is rebuilt.
-#}
{#- target.get: a Spark target has no database (Databricks names its catalog there). -#}
{% macro engage_store(kind) -%}
    {%- set identifier = '_audience_members' if kind == 'audience' else '_trait_values' -%}
    {{- return(api.Relation.create(
        database=target.get('database'),
        schema=generate_schema_name('engage', none),
        identifier=identifier,
        type='table',
    )) -}}
{%- endmacro %}

{% macro engage_store_columns(kind) -%}
    {%- if kind == 'audience' -%}
        {{- return([
            ['audience_key', dbt.type_string()],
            ['person_id', dbt.type_string()],
            ['model_name', dbt.type_string()],
            ['computed_at', ctsync.type_timestamptz()],
        ]) -}}
    {%- else -%}
        {{- return([
            ['trait_key', dbt.type_string()],
            ['person_id', dbt.type_string()],
            ['value', dbt.type_string()],
            ['value_type', dbt.type_string()],
            ['include_anonymous', dbt.type_boolean()],
            ['model_name', dbt.type_string()],
            ['computed_at', ctsync.type_timestamptz()],
        ]) -}}
    {%- endif -%}
{%- endmacro %}

{#- Create the store of `kind` (and its schema) when it does not exist yet. -#}
{% macro ensure_engage_store(kind) -%}
    {%- set store = ctsync.engage_store(kind) -%}
    {%- do adapter.create_schema(store) -%}
    {%- set columns = [] -%}
    {%- for name, data_type in ctsync.engage_store_columns(kind) -%}
        {%- do columns.append(name ~ ' ' ~ data_type) -%}
    {%- endfor -%}
    {%- call statement('ensure_engage_store_' ~ kind) -%}
        {{ ctsync.create_engage_store_sql(kind, store, columns) }}
    {%- endcall -%}
{%- endmacro %}

{#- The statement creating the store when it is missing (dispatched). -#}
{% macro create_engage_store_sql(kind, store, columns) -%}
    {{ return(adapter.dispatch('create_engage_store_sql', 'ctsync')(kind, store, columns)) }}
{%- endmacro %}

{% macro default__create_engage_store_sql(kind, store, columns) -%}
    create table if not exists {{ store }} ({{ columns | join(', ') }})
{%- endmacro %}

{#-
    Spark: one partition per key, so a model replaces its slice by overwriting its own
    partition (macros/engage/publish.sql). The engine's default table format: Parquet on
    Spark, Delta on Databricks.
-#}
{% macro spark__create_engage_store_sql(kind, store, columns) -%}
    create table if not exists {{ store }} ({{ columns | join(', ') }}) partitioned by ({{ kind }}_key)
{%- endmacro %}

{#- pre-hook of the engage models: both stores exist before a view selects from them. -#}
{% macro ensure_engage_stores() -%}
    {%- if execute -%}
        {%- do ctsync.ensure_engage_store('audience') -%}
        {%- do ctsync.ensure_engage_store('trait') -%}
    {%- endif -%}
{%- endmacro %}
