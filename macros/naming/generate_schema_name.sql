{#-
    A folder's `+schema: engage` means exactly the schema `engage` (not dbt's default
    `<target schema>_engage`), so the sync step finds the engage tables under a fixed name.
    Models without a custom schema go to the target's schema (`analytics` by default).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
