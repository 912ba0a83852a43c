{#- A timestamp with a time zone: every ctsync timestamp is an instant in UTC. -#}
{% macro type_timestamptz() -%}
    {{ return(adapter.dispatch('type_timestamptz', 'ctsync')()) }}
{%- endmacro %}

{% macro default__type_timestamptz() -%}
    timestamp with time zone
{%- endmacro %}

{#- Spark's TIMESTAMP is an instant (TIMESTAMP_LTZ), shown in the session's time zone. -#}
{% macro spark__type_timestamptz() -%}
    timestamp
{%- endmacro %}

{#-
    The SQL type for a column type named in a staging column list: string, float, integer,
    boolean or timestamp (with time zone).
-#}
{% macro ctsync_type(name) -%}
    {%- if name == 'string' -%} {{ dbt.type_string() }}
    {%- elif name == 'float' -%} {{ ctsync.type_double() }}
    {%- elif name == 'integer' -%} {{ dbt.type_bigint() }}
    {%- elif name == 'boolean' -%} {{ dbt.type_boolean() }}
    {%- elif name == 'timestamp' -%} {{ ctsync.type_timestamptz() }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("unknown column type '" ~ name ~ "': use string, float, integer, boolean or timestamp") }}
    {%- endif -%}
{%- endmacro %}

{#- A 64-bit float (dbt.type_float() is a 32-bit REAL on DuckDB). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'ctsync')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{#-
    `expression` (text) as a number of `data_type`, NULL when it is not a number, so one
    odd value in an app-defined field never fails a build (dbt.safe_cast is a plain cast
    on DuckDB and Postgres).
-#}
{% macro number_or_null(expression, data_type) -%}
    {{ return(adapter.dispatch('number_or_null', 'ctsync')(expression, data_type)) }}
{%- endmacro %}

{% macro default__number_or_null(expression, data_type) -%}
    try_cast({{ expression }} as {{ data_type }})
{%- endmacro %}

{% macro postgres__number_or_null(expression, data_type) -%}
    case
        when trim({{ expression }}) ~ '^[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$'
            then cast(trim({{ expression }}) as {{ data_type }})
    end
{%- endmacro %}
