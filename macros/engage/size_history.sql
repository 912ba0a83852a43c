{#-
    engage.audience_size_history: every `dbt build` or `dbt run` that succeeds appends one
    row per audience and per computed trait it built (on-run-end): the members the sync
    sends (engage_audience_memberships), or the people with a value
    (engage_computed_traits), with the build's id (dbt's invocation_id), start, as_of and
    the CleverTap schemas it read. A build with an error or a failed test appends nothing.
-#}
{% macro size_history_relation() -%}
    {{- return(api.Relation.create(
        database=target.get('database'),
        schema=generate_schema_name('engage', none),
        identifier='audience_size_history',
        type='table',
    )) -}}
{%- endmacro %}

{#- on-run-start: create the history table (and the engage schema) when missing. -#}
{% macro ensure_size_history() -%}
    {%- if execute -%}
        {%- set history = ctsync.size_history_relation() -%}
        {%- do adapter.create_schema(history) -%}
        {%- call statement('ensure_size_history') -%}
            create table if not exists {{ history }} (
                build_id {{ dbt.type_string() }},
                built_at {{ ctsync.type_timestamptz() }},
                as_of {{ ctsync.type_timestamptz() }},
                computation_class {{ dbt.type_string() }},
                computation_key {{ dbt.type_string() }},
                size {{ dbt.type_bigint() }},
                source_count {{ dbt.type_int() }},
                source_relations {{ dbt.type_string() }}
            )
        {%- endcall -%}
        {#- Committed at once: the data tests of this run read it from other connections. -#}
        {%- do adapter.commit() -%}
    {%- endif -%}
{%- endmacro %}

{#- on-run-end: append this run's sizes, if it succeeded and built an audience or a trait. -#}
{% macro record_engage_sizes(results) -%}
    {%- if execute and flags.WHICH in ('build', 'run') -%}
        {%- set built = [] -%}
        {%- for result in results -%}
            {%- if result.status in ('error', 'fail', 'runtime error') -%}
                {%- do log('the build did not succeed: no audience sizes recorded', info=true) -%}
                {{- return('') -}}
            {%- endif -%}
            {%- if result.node.resource_type == 'model' and result.status == 'success' -%}
                {%- do built.append(result.node.name) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set parts = [] -%}
        {%- for kind in ('audience', 'trait') -%}
            {%- set models = [] -%}
            {%- for definition in ctsync.validate_engage_definitions()
                if definition.kind == kind and definition.model_name in built -%}
                {%- do models.append("'" ~ definition.model_name ~ "'") -%}
            {%- endfor -%}
            {%- set sql = ctsync.engage_sizes_sql(kind, models) if models else '' -%}
            {%- if sql -%}
                {%- do parts.append(sql) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if parts -%}
            {%- do ctsync.ensure_size_history() -%}
            {%- set sources = ctsync.clevertap_schemas() -%}
            {%- call statement('record_engage_sizes') -%}
                insert into {{ ctsync.size_history_relation() }} (
                    build_id, built_at, as_of, computation_class, computation_key, size,
                    source_count, source_relations
                )
                select
                    '{{ invocation_id }}',
                    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}+00:00' as {{ ctsync.type_timestamptz() }}),
                    {{ ctsync.as_of() }},
                    sizes.computation_class,
                    sizes.computation_key,
                    sizes.size,
                    {{ sources | length }},
                    '{{ sources | join(",") }}'
                from (
                    {{ parts | join('\n                    union all\n                    ') }}
                ) as sizes
            {%- endcall -%}
            {%- do adapter.commit() -%}
        {%- endif -%}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}

{#-
    Sizes of the audiences (or traits) computed by `models` (quoted model names), read from
    the engage views: empty when those views have not been built yet.
-#}
{% macro engage_sizes_sql(kind, models) -%}
    {%- set schema = generate_schema_name('engage', none) -%}
    {%- set catalog_name, rows_name = ('engage_audiences', 'engage_audience_memberships')
        if kind == 'audience' else ('engage_traits', 'engage_computed_traits') -%}
    {%- set catalog = adapter.get_relation(database=target.get('database'), schema=schema, identifier=catalog_name) -%}
    {%- set rows = adapter.get_relation(database=target.get('database'), schema=schema, identifier=rows_name) -%}
    {%- if catalog is none or rows is none -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set key = kind ~ '_key' -%}
    {{- return(
        "select '" ~ kind ~ "' as computation_class, computations." ~ key ~ " as computation_key, "
        ~ "count(computed." ~ key ~ ") as size "
        ~ "from " ~ catalog ~ " as computations "
        ~ "left join " ~ rows ~ " as computed on computations." ~ key ~ " = computed." ~ key ~ " "
        ~ "where computations.model_name in (" ~ (models | join(', ')) ~ ") "
        ~ "group by computations." ~ key
    ) -}}
{%- endmacro %}

{#-
    `dbt run-operation report_build_sizes --args '{build_id: ...}'`: the sizes one build
    recorded, logged as one line `ctsync:sizes [[class, key, size], ...]`. `ctsync build` reads
    them this way from a warehouse it cannot open itself (Spark's catalog).
-#}
{% macro report_build_sizes(build_id) -%}
    {%- set found = run_query(
        "select computation_class, computation_key, size from " ~ ctsync.size_history_relation()
        ~ " where build_id = " ~ ctsync.string_literal(build_id) ~ " order by 2"
    ) -%}
    {%- set rows = [] -%}
    {%- for row in found.rows -%}
        {%- do rows.append([row[0] | string, row[1] | string, row[2] | int]) -%}
    {%- endfor -%}
    {%- do log('ctsync:sizes ' ~ tojson(rows), info=true) -%}
{%- endmacro %}
