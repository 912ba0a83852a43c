{#-
    `relation` (a `source('clevertap', ...)` table) read from every CleverTap schema of
    clevertap_schemas() and unioned by column name, Fivetran-style: each row carries
    `source_relation`, the schema it came from. `columns` is a list of [name, type] pairs,
    the type one of string, float, integer, boolean, timestamp. A young warehouse or a
    source that lacks something still reads: a column a schema's table does not have yet
    (the loader adds a column only once a non-null value arrives) is a typed NULL there, and
    a schema without the table (no such event exported so far) adds no rows. With the table
    in no schema, the result is empty, with the same columns.
-#}
{% macro select_source_columns(relation, columns) -%}
    {%- set selects = [] -%}
    {%- if execute -%}
        {%- for schema in ctsync.clevertap_schemas() -%}
            {%- set found = adapter.get_relation(
                database=relation.database,
                schema=schema,
                identifier=relation.identifier,
            ) -%}
            {%- if found is not none -%}
                {%- set present = adapter.get_columns_in_relation(found)
                    | map(attribute='name') | map('lower') | list -%}
                {%- do selects.append(ctsync.select_columns_of(found, schema, columns, present)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if selects -%}
        {{ selects | join('\n\n    union all\n\n    ') }}
    {%- else -%}
        {{ ctsync.select_columns_of(none, none, columns, []) }}
    {%- endif -%}
{%- endmacro %}

{#- One schema's part of select_source_columns (no relation: no rows, same columns). -#}
{% macro select_columns_of(relation, schema, columns, present) -%}
    select
    {%- for column in columns %}
        {% set name, type_name = column[0], column[1] -%}
        {%- if name in present and type_name == 'string' -%}
            {#- Any type reads as text; other types are kept as the loader typed them. -#}
            cast({{ adapter.quote(name) }} as {{ dbt.type_string() }}) as {{ adapter.quote(name) }},
        {%- elif name in present -%}
            {{ adapter.quote(name) }},
        {%- else -%}
            cast(null as {{ ctsync.ctsync_type(type_name) }}) as {{ adapter.quote(name) }},
        {%- endif -%}
    {%- endfor %}
    {%- if relation is not none %}
        cast('{{ schema }}' as {{ dbt.type_string() }}) as source_relation
    from {{ relation }}
    {%- else %}
        cast(null as {{ dbt.type_string() }}) as source_relation
    where 1 = 0
    {%- endif %}
{%- endmacro %}

{#- The columns every event table of the loader has (Segment's standard track columns). -#}
{% macro clevertap_standard_columns() -%}
    {{ return([
        ['id', 'string'],
        ['user_id', 'string'],
        ['anonymous_id', 'string'],
        ['event', 'string'],
        ['event_text', 'string'],
        ['timestamp', 'timestamp'],
        ['original_timestamp', 'timestamp'],
        ['received_at', 'timestamp'],
        ['uuid_ts', 'timestamp'],
    ]) }}
{%- endmacro %}

{#- Context columns (from the event's `profile` and `deviceInfo`, in Segment's names) that staging exposes. -#}
{% macro clevertap_context_columns() -%}
    {{ return([
        ['context_traits_identity', 'string'],
        ['context_traits_object_id', 'string'],
        ['context_traits_email', 'string'],
        ['context_traits_phone', 'string'],
        ['context_traits_name', 'string'],
        ['context_traits_platform', 'string'],
        ['context_traits_all_identities', 'string'],
        ['context_device_token', 'string'],
        ['context_device_manufacturer', 'string'],
        ['context_device_model', 'string'],
        ['context_app_version', 'string'],
        ['context_device_sdk_version', 'string'],
        ['context_os_version', 'string'],
        ['context_device_browser', 'string'],
        ['context_campaign_source', 'string'],
        ['context_campaign_medium', 'string'],
        ['context_campaign_name', 'string'],
    ]) }}
{%- endmacro %}

{#- Standard and context columns, then the event's own property columns. -#}
{% macro clevertap_event_columns(properties=[]) -%}
    {{ return(ctsync.clevertap_standard_columns() + ctsync.clevertap_context_columns() + properties) }}
{%- endmacro %}
