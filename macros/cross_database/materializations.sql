{#-
    The materialization of a model kept incrementally by a unique key (delete+insert).
    Spark's Parquet tables cannot delete rows, and merge needs Delta or Iceberg: there the
    model is a table built in full on every run.
-#}
{% macro keyed_incremental_materialization() -%}
    {{ return(adapter.dispatch('keyed_incremental_materialization', 'ctsync')()) }}
{%- endmacro %}

{% macro default__keyed_incremental_materialization() -%}
    {{ return('incremental') }}
{%- endmacro %}

{% macro spark__keyed_incremental_materialization() -%}
    {{ return('table') }}
{%- endmacro %}
