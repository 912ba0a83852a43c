{#-
    SQL selecting one row per audience (or trait) found in the graph: the body of
    engage_audiences and engage_traits. With no model of that kind, an empty result with
    the same columns.
-#}
{% macro engage_catalog_sql(kind) -%}
    {%- set definitions = ctsync.validate_engage_definitions() | selectattr('kind', 'equalto', kind) | list -%}
    {%- set rows = [] -%}
    {%- for definition in definitions -%}
        {%- if kind == 'audience' -%}
            {%- do rows.append(
                "select '" ~ definition.key ~ "' as audience_key, "
                ~ ctsync.string_literal(definition.name) ~ " as audience_name, "
                ~ ('true' if definition.include_anonymous else 'false') ~ " as include_anonymous, "
                ~ "'" ~ definition.model_name ~ "' as model_name"
            ) -%}
        {%- else -%}
            {%- do rows.append(
                "select '" ~ definition.key ~ "' as trait_key, "
                ~ ctsync.string_literal(definition.name) ~ " as trait_name, "
                ~ "'" ~ definition.value_type ~ "' as value_type, "
                ~ "'" ~ definition.model_name ~ "' as model_name"
            ) -%}
        {%- endif -%}
    {%- endfor %}
    {%- if rows %}
    {{ rows | join('\n    union all\n    ') }}
    {%- elif kind == 'audience' %}
    select
        cast(null as {{ dbt.type_string() }}) as audience_key,
        cast(null as {{ dbt.type_string() }}) as audience_name,
        cast(null as {{ dbt.type_boolean() }}) as include_anonymous,
        cast(null as {{ dbt.type_string() }}) as model_name
    where 1 = 0
    {%- else %}
    select
        cast(null as {{ dbt.type_string() }}) as trait_key,
        cast(null as {{ dbt.type_string() }}) as trait_name,
        cast(null as {{ dbt.type_string() }}) as value_type,
        cast(null as {{ dbt.type_string() }}) as model_name
    where 1 = 0
    {%- endif %}
{%- endmacro %}
