{#-
    post-hook of every audience and trait model (set per folder in dbt_project.yml):
    replace this model's slice of the engage store with the rows it just built, stamped
    with its key and the as_of instant. An audience returns one row per member
    (`person_id`; repeats are collapsed); a trait returns one row per person with its
    `value` (rows with a null value are not published).
-#}
{% macro publish_engage_model(kind) -%}
    {%- if execute -%}
        {%- set definition = ctsync.engage_definition_of(kind, model.name) -%}
        {%- if definition is none -%}
            {{ exceptions.raise_compiler_error(
                "publish_engage_model('" ~ kind ~ "') runs only on models under models/"
                ~ ctsync.engage_kind_folder(kind) ~ "/, not on " ~ model.name
            ) }}
        {%- endif -%}
        {%- set where = kind ~ " model " ~ model.name ~ " (" ~ model.original_file_path ~ ")" -%}
        {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set required = ['person_id'] if kind == 'audience' else ['person_id', 'value'] -%}
        {%- for column in required if column not in columns -%}
            {{ exceptions.raise_compiler_error(
                where ~ " must return a `" ~ column ~ "` column"
                ~ (" (one row per member)" if kind == 'audience' else " (one row per person, with its value)")
                ~ "; it returns: " ~ (columns | join(', '))
            ) }}
        {%- endfor -%}
        {%- if kind == 'trait' -%}
            {%- set repeated = run_query(
                "select count(*) from (select person_id from " ~ this
                ~ " where person_id is not null group by person_id having count(*) > 1) as repeated"
            ).columns[0].values()[0] -%}
            {%- if repeated > 0 -%}
                {{ exceptions.raise_compiler_error(
                    where ~ " returns more than one row for " ~ repeated
                    ~ " person(s): a trait has one value per person (aggregate per person_id)"
                ) }}
            {%- endif -%}
        {%- endif -%}
        {%- do ctsync.ensure_engage_store(kind) -%}
        {%- set store = ctsync.engage_store(kind) -%}
        {#- The slice's rows: the store's columns after the key, in its order (engage_store_columns). -#}
        {%- set rows -%}
            {%- if kind == 'audience' %}
            select distinct
                cast(person_id as {{ dbt.type_string() }}) as person_id,
                '{{ model.name }}' as model_name,
                {{ ctsync.as_of() }} as computed_at
            from {{ this }}
            where person_id is not null
            {%- else %}
            select
                cast(person_id as {{ dbt.type_string() }}) as person_id,
                {{ ctsync.json_value_text('value', definition.value_type) }} as value,
                '{{ definition.value_type }}' as value_type,
                {{ 'true' if definition.include_anonymous else 'false' }} as include_anonymous,
                '{{ model.name }}' as model_name,
                {{ ctsync.as_of() }} as computed_at
            from {{ this }}
            where person_id is not null
                and value is not null
            {%- endif %}
        {%- endset -%}
        {%- do ctsync.replace_engage_slice(kind, store, definition.key, rows) -%}
    {%- endif -%}
{%- endmacro %}

{#-
    Replace the slice of `store` under `key` with `rows` (a select of the store's other
    columns, in order). Dispatched: DuckDB and PostgreSQL delete and insert in the model's
    transaction; Spark overwrites the key's partition (Parquet tables have no DELETE).
-#}
{% macro replace_engage_slice(kind, store, key, rows) -%}
    {{ return(adapter.dispatch('replace_engage_slice', 'ctsync')(kind, store, key, rows)) }}
{%- endmacro %}

{% macro default__replace_engage_slice(kind, store, key, rows) -%}
    {%- set columns = [] -%}
    {%- for name, data_type in ctsync.engage_store_columns(kind) -%}
        {%- do columns.append(name) -%}
    {%- endfor -%}
    {%- call statement('unpublish_' ~ kind) -%}
        delete from {{ store }} where {{ kind }}_key = '{{ key }}'
    {%- endcall -%}
    {%- call statement('publish_' ~ kind) -%}
        insert into {{ store }} ({{ columns | join(', ') }})
        select '{{ key }}', slice_rows.*
        from ({{ rows }}) as slice_rows
    {%- endcall -%}
{%- endmacro %}

{#-
    An empty result empties the partition too. Concurrent overwrites of one Parquet table
    would share its _temporary folder, which is why the spark target runs one thread.
-#}
{% macro spark__replace_engage_slice(kind, store, key, rows) -%}
    {%- call statement('publish_' ~ kind) -%}
        insert overwrite table {{ store }} partition ({{ kind }}_key = '{{ key }}')
        select slice_rows.*
        from ({{ rows }}) as slice_rows
    {%- endcall -%}
{%- endmacro %}
