{#-
    `text` as a SQL string literal. DuckDB and PostgreSQL double a quote; Spark reads
    backslash escapes in literals, so there a backslash and a quote are escaped with one
    (dbt.escape_single_quotes leaves backslashes as they are).
-#}
{% macro string_literal(text) -%}
    {{ return(adapter.dispatch('string_literal', 'ctsync')(text)) }}
{%- endmacro %}

{% macro default__string_literal(text) -%}
    {{- return("'" ~ (text | string | replace("'", "''")) ~ "'") -}}
{%- endmacro %}

{% macro spark__string_literal(text) -%}
    {{- return("'" ~ (text | string | replace('\\', '\\\\') | replace("'", "\\'")) ~ "'") -}}
{%- endmacro %}
