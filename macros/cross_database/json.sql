{#-
    JSON text of a value, as the engage tables store computed trait values: numbers as JSON
    numbers, strings as JSON strings, booleans as true/false, timestamps as ISO-8601 UTC
    strings ("2026-11-01T10:00:00Z", the form Engage requires). value_type is one of
    number, string, boolean, timestamp.
-#}
{% macro json_value_text(expression, value_type) -%}
    {{ return(adapter.dispatch('json_value_text', 'ctsync')(expression, value_type)) }}
{%- endmacro %}

{% macro default__json_value_text(expression, value_type) -%}
    {%- if value_type == 'timestamp' -%}
        cast(to_json({{ ctsync.iso_utc_text(expression) }}) as {{ dbt.type_string() }})
    {%- elif value_type == 'number' -%}
        cast(to_json(cast({{ expression }} as {{ ctsync.type_double() }})) as {{ dbt.type_string() }})
    {%- else -%}
        cast(to_json({{ expression }}) as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__json_value_text(expression, value_type) -%}
    {%- if value_type == 'timestamp' -%}
        cast(to_json({{ ctsync.iso_utc_text(expression) }}) as varchar)
    {%- elif value_type == 'number' -%}
        {#- Integral values print without ".0" (3, not 3.0), like Python's json.dumps of an int. -#}
        case
            when cast({{ expression }} as double) = trunc(cast({{ expression }} as double))
                and abs(cast({{ expression }} as double)) < 1e15
                then cast(cast({{ expression }} as bigint) as varchar)
            else cast(to_json(cast({{ expression }} as double)) as varchar)
        end
    {%- else -%}
        cast(to_json({{ expression }}) as varchar)
    {%- endif -%}
{%- endmacro %}

{% macro postgres__json_value_text(expression, value_type) -%}
    {%- if value_type == 'timestamp' -%}
        to_json({{ ctsync.iso_utc_text(expression) }})::text
    {%- elif value_type == 'number' -%}
        to_json(trim_scale(({{ expression }})::numeric))::text
    {%- else -%}
        to_json({{ expression }})::text
    {%- endif -%}
{%- endmacro %}

{#-
    Spark's to_json takes arrays and structs, not scalars: the value is written as a
    one-element array and the brackets are cut off. Numbers print as Python's json.dumps
    does: integral values without ".0", others in plain decimals (Java's toString would
    write 12345678.9 as 1.23456789E7), the exponent form only outside 1e-3 to 1e15.
-#}
{% macro spark__json_value_text(expression, value_type) -%}
    {%- if value_type == 'timestamp' -%}
        concat('"', {{ ctsync.iso_utc_text(expression) }}, '"')
    {%- elif value_type == 'number' -%}
        case
            when cast({{ expression }} as double) = floor(cast({{ expression }} as double))
                and abs(cast({{ expression }} as double)) < 1e15
                then cast(cast({{ expression }} as bigint) as string)
            when abs(cast({{ expression }} as double)) >= 1e-3
                and abs(cast({{ expression }} as double)) < 1e15
                then regexp_replace(
                    cast(cast(cast({{ expression }} as double) as decimal(38, 18)) as string), '0+$', ''
                )
            else regexp_extract(to_json(array(cast({{ expression }} as double))), '^\\[(.*)\\]$', 1)
        end
    {%- else -%}
        regexp_extract(to_json(array({{ expression }})), '^\\[(.*)\\]$', 1)
    {%- endif -%}
{%- endmacro %}

{#- ISO-8601 text of an instant in UTC, to the second: 2026-11-01T10:00:00Z. -#}
{% macro iso_utc_text(expression) -%}
    {{ return(adapter.dispatch('iso_utc_text', 'ctsync')(expression)) }}
{%- endmacro %}

{% macro default__iso_utc_text(expression) -%}
    strftime(timezone('UTC', {{ expression }}), '%Y-%m-%dT%H:%M:%SZ')
{%- endmacro %}

{% macro postgres__iso_utc_text(expression) -%}
    to_char(({{ expression }}) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro %}

{#- to_utc_timestamp shifts the instant so that the session's time zone shows its UTC wall clock. -#}
{% macro spark__iso_utc_text(expression) -%}
    concat(
        date_format(to_utc_timestamp({{ expression }}, current_timezone()), 'yyyy-MM-dd'),
        'T',
        date_format(to_utc_timestamp({{ expression }}, current_timezone()), 'HH:mm:ss'),
        'Z'
    )
{%- endmacro %}
