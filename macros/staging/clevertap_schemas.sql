{#-
    The CleverTap schemas staging reads, sorted by name. The var `clevertap_schemas` (a list,
    or names separated by commas) when it is set; otherwise every schema of the warehouse
    that `ctsync load` wrote and that holds events: a schema with the loader's `_loads` table
    and at least one event table (a base table other than `tracks` with an `event_text`
    column). `ctsync build` finds the same schemas and passes them in the var, so a nickname
    is typed once, at load time. Empty when nothing is found, and at parse time.
-#}
{% macro clevertap_schemas() -%}
    {%- set configured = var('clevertap_schemas', []) -%}
    {%- if configured is string -%}
        {%- set configured = configured.split(',') -%}
    {%- endif -%}
    {%- set schemas = configured | map('string') | map('trim') | reject('equalto', '') | list -%}
    {%- if schemas | length == 0 and execute -%}
        {%- set schemas = ctsync.clevertap_schemas_found() -%}
    {%- endif -%}
    {{- return(schemas | unique | sort | list) -}}
{%- endmacro %}

{#-
    The discovery query behind clevertap_schemas() (information_schema, any engine): schemas
    with an event table and, unless `loaded_only` is false, the `_loads` table of the loader.
-#}
{% macro clevertap_schemas_sql(loaded_only=true) -%}
    select distinct event_tables.table_schema
    from information_schema.tables as event_tables
    inner join information_schema.columns as event_columns
        on event_tables.table_catalog = event_columns.table_catalog
        and event_tables.table_schema = event_columns.table_schema
        and event_tables.table_name = event_columns.table_name
    where event_tables.table_catalog = '{{ target.database }}'
        and event_tables.table_type = 'BASE TABLE'
        and event_tables.table_name <> 'tracks'
        and event_columns.column_name = 'event_text'
    {%- if loaded_only %}
        and exists (
            select 1
            from information_schema.tables as loads
            inner join information_schema.columns as loads_columns
                on loads.table_catalog = loads_columns.table_catalog
                and loads.table_schema = loads_columns.table_schema
                and loads.table_name = loads_columns.table_name
            where loads.table_catalog = event_tables.table_catalog
                and loads.table_schema = event_tables.table_schema
                and loads.table_name = '_loads'
                and loads.table_type = 'BASE TABLE'
                and loads_columns.column_name = 'checksum'
        )
    {%- endif %}
    order by 1
{%- endmacro %}

{#-
    The schemas clevertap_schemas_sql() selects, as a list of names (dispatched: Spark has no
    information_schema, so there the catalog is listed table by table).
-#}
{% macro clevertap_schemas_found(loaded_only=true) -%}
    {{ return(adapter.dispatch('clevertap_schemas_found', 'ctsync')(loaded_only)) }}
{%- endmacro %}

{% macro default__clevertap_schemas_found(loaded_only=true) -%}
    {%- set found = run_query(ctsync.clevertap_schemas_sql(loaded_only)) -%}
    {{- return(found.columns[0].values() | map('string') | list) -}}
{%- endmacro %}

{% macro spark__clevertap_schemas_found(loaded_only=true) -%}
    {%- set found = [] -%}
    {%- for schema in run_query('show schemas').columns[0].values() | map('string') | sort -%}
        {%- set views = run_query('show views in ' ~ schema).columns[1].values() | map('lower') | list -%}
        {%- set tables = run_query('show tables in ' ~ schema).columns[1].values()
            | map('lower') | reject('in', views) | sort | list -%}
        {%- set loaded = '_loads' in tables and 'checksum' in ctsync.spark_column_names(schema, '_loads') -%}
        {%- for name in tables if (loaded or not loaded_only) and name != 'tracks' and schema not in found -%}
            {%- if 'event_text' in ctsync.spark_column_names(schema, name) -%}
                {%- do found.append(schema) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(found) -}}
{%- endmacro %}

{#-
    `dbt run-operation report_clevertap_sources`: the schemas `ctsync load` wrote, split into
    those with an event table (what a build reads) and those without, logged as one line
    `ctsync:sources {"with_events": [...], "without_events": [...]}`. `ctsync build` runs it
    before building on a warehouse it cannot open itself (Spark's catalog), to refuse a build
    with nothing to read as it does on DuckDB and PostgreSQL.
-#}
{% macro report_clevertap_sources() -%}
    {%- set with_events = ctsync.clevertap_schemas_found(loaded_only=true) -%}
    {%- set without_events = ctsync.loaded_clevertap_schemas() | reject('in', with_events) | list -%}
    {%- do log('ctsync:sources ' ~ tojson({'with_events': with_events, 'without_events': without_events}), info=true) -%}
{%- endmacro %}

{#- Every schema with the loader's `_loads` table (and its `checksum` column), events or not. -#}
{% macro loaded_clevertap_schemas() -%}
    {{ return(adapter.dispatch('loaded_clevertap_schemas', 'ctsync')()) }}
{%- endmacro %}

{% macro default__loaded_clevertap_schemas() -%}
    {%- set found = run_query(
        "select distinct loads.table_schema from information_schema.tables as loads "
        ~ "inner join information_schema.columns as loads_columns "
        ~ "on loads.table_catalog = loads_columns.table_catalog "
        ~ "and loads.table_schema = loads_columns.table_schema "
        ~ "and loads.table_name = loads_columns.table_name "
        ~ "where loads.table_catalog = '" ~ target.database ~ "' and loads.table_name = '_loads' "
        ~ "and loads.table_type = 'BASE TABLE' and loads_columns.column_name = 'checksum' order by 1"
    ) -%}
    {{- return(found.columns[0].values() | map('string') | list) -}}
{%- endmacro %}

{% macro spark__loaded_clevertap_schemas() -%}
    {%- set found = [] -%}
    {%- for schema in run_query('show schemas').columns[0].values() | map('string') | sort -%}
        {%- set tables = run_query('show tables in ' ~ schema).columns[1].values() | map('lower') | list -%}
        {%- if '_loads' in tables and 'checksum' in ctsync.spark_column_names(schema, '_loads') -%}
            {%- do found.append(schema) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(found) -}}
{%- endmacro %}

{% macro spark_column_names(schema, identifier) -%}
    {%- set relation = api.Relation.create(schema=schema, identifier=identifier, type='table') -%}
    {{- return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) -}}
{%- endmacro %}

{#-
    on-run-start: a `dbt build` or `dbt run` that would read no CleverTap schema, or a schema
    named in the var that holds no event table (a typo), stops before anything is built. It
    would otherwise succeed with no members, and the next sync would tell the destination
    that everyone left every audience.
-#}
{% macro check_clevertap_schemas() -%}
    {%- if execute and flags.WHICH in ('build', 'run') -%}
        {%- set schemas = ctsync.clevertap_schemas() -%}
        {%- if schemas | length == 0 -%}
            {{ exceptions.raise_compiler_error(
                "no CleverTap data in the warehouse " ~ ((target.database ~ " ") if target.database else "") ~ "(target " ~ target.name ~ "):"
                ~ " no schema has the _loads table of `ctsync load` and an event table."
                ~ " Check CTSYNC_WAREHOUSE (or the target), load exports first"
                ~ " (`ctsync load PATH --nickname NAME`), or name the schemas with"
                ~ " --vars '{clevertap_schemas: [schema]}'."
            ) }}
        {%- endif -%}
        {%- set with_events = ctsync.clevertap_schemas_found(loaded_only=false) -%}
        {%- set missing = schemas | reject('in', with_events) | list -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                "var clevertap_schemas names " ~ (missing | join(', ')) ~ ", which hold(s) no event table in "
                ~ (target.database or "the " ~ target.name ~ " catalog") ~ ": check the names (the snake_case of each nickname given to"
                ~ " `ctsync load`), or leave the var out to read every loaded schema."
            ) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
