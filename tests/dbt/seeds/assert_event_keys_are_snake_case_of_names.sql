{#- The catalog's event_key is the loader's table name: snake_case(event_name), checked with the dbt macro. -#}
{%- set catalog = ref('clevertap_event_catalog') -%}
{%- set mismatches = [] -%}
{%- if execute -%}
    {%- set rows = run_query('select event_name, event_key from ' ~ catalog) -%}
    {%- for row in rows -%}
        {%- if snake_case(row[0]) != row[1] -%}
            {%- do mismatches.append(row[0] ~ ' -> ' ~ row[1] ~ ' (expected ' ~ snake_case(row[0]) ~ ')') -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif %}
select '{{ mismatches | join("; ") | replace("'", "''") }}' as mismatch
where {{ 'true' if mismatches else 'false' }}
