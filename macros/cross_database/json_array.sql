{#-
    One row per element of a JSON array held as text (the loader stores arrays such as
    Charged.Items as JSON text). Renders a FROM-clause fragment that, joined laterally to
    `relation_alias`, yields `item_index` (0-based) and `item` (the element as JSON).
-#}
{% macro json_array_elements(relation_alias, column) -%}
    {{ return(adapter.dispatch('json_array_elements', 'ctsync')(relation_alias, column)) }}
{%- endmacro %}

{% macro default__json_array_elements(relation_alias, column) -%}
    cross join lateral (
        select
            cast(generate_subscripts(items_json, 1) - 1 as bigint) as item_index,
            unnest(items_json) as item
        from (
            select cast(
                case
                    when json_valid({{ relation_alias }}.{{ column }})
                        and json_type(json({{ relation_alias }}.{{ column }})) = 'ARRAY'
                        then json({{ relation_alias }}.{{ column }})
                end as json[]
            ) as items_json
        )
    ) as array_elements
{%- endmacro %}

{% macro postgres__json_array_elements(relation_alias, column) -%}
    cross join lateral (
        select
            element.ordinality - 1 as item_index,
            element.value as item
        from jsonb_array_elements(
            case
                when left(ltrim({{ relation_alias }}.{{ column }}), 1) = '['
                    then ({{ relation_alias }}.{{ column }})::jsonb
            end
        )
            with ordinality as element(value, ordinality)
    ) as array_elements
{%- endmacro %}

{#-
    Spark: posexplode over the array parsed as array<string>, which keeps each element's
    JSON text (objects stay objects); a lateral view drops rows without elements, as the
    joins above do.
-#}
{% macro spark__json_array_elements(relation_alias, column) -%}
    lateral view posexplode(
        case
            when left(ltrim({{ relation_alias }}.{{ column }}), 1) = '['
                then from_json({{ relation_alias }}.{{ column }}, 'array<string>')
        end
    ) array_elements as item_index, item
{%- endmacro %}

{#- The text of one key of a JSON object (null when missing), and its number. -#}
{% macro json_field_text(json_expression, key) -%}
    {{ return(adapter.dispatch('json_field_text', 'ctsync')(json_expression, key)) }}
{%- endmacro %}

{% macro default__json_field_text(json_expression, key) -%}
    json_extract_string({{ json_expression }}, '$."{{ key }}"')
{%- endmacro %}

{% macro postgres__json_field_text(json_expression, key) -%}
    ({{ json_expression }}) ->> '{{ key }}'
{%- endmacro %}

{#- Spark's JSON path names a key with spaces in brackets: $['Product name']. -#}
{% macro spark__json_field_text(json_expression, key) -%}
    get_json_object({{ json_expression }}, '$[\'{{ key }}\']')
{%- endmacro %}
