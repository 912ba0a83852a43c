{#- on-run-start: fail the run before anything is built when audience/trait keys clash. -#}
{% macro check_engage_keys() -%}
    {%- if execute -%}
        {%- do ctsync.validate_engage_definitions() -%}
    {%- endif -%}
{%- endmacro %}
