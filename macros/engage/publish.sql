{#-
    post-hook of every audience and trait model (set per folder in dbt_project.yml):
    replace this model's slice of the engage store with the rows it just built, stamped
    with its key and the as_of instant. An audience returns one row per member
    (`person_id`; repeats are collapsed); a trait returns one row per person with its
    `value` (rows with a null value are not published).
-#}
{% macro publish_engage_model(kind) -%}
    {%- if execute -%}
        {%- set definition = ctsync.engage_definition_of(kind, model.name) -%}
        {%- if definition is none -%}
            {{ exceptions.raise_compiler_error(
                "publish_engage_model('" ~ kind ~ "') runs only on models under models/"
                ~ ctsync.engage_kind_folder(kind) ~ "/, not on " ~ model.name
            ) }}
        {%- endif -%}
        {%- set where = kind ~ " model " ~ model.name ~ " (" ~ model.original_file_path ~ ")" -%}
        {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- set required = ['person_id'] if kind == 'audience' else ['person_id', 'value'] -%}
        {%- for column in required if column not in columns -%}
            {{ exceptions.raise_compiler_error(
                where ~ " must return a `" ~ column ~ "` column"
                ~ (" (one row per member)" if kind == 'audience' else " (one row per person, with its value)")
                ~ "; it returns: " ~ (columns | join(', '))
            ) }}
        {%- endfor -%}
        {%- if kind == 'trait' -%}
            {%- set repeated = run_query(
                "select count(*) from (select person_id from " ~ this
                ~ " where person_id is not null group by person_id having count(*) > 1) as repeated"
            ).columns[0].values()[0] -%}
            {%- if repeated > 0 -%}
                {{ exceptions.raise_compiler_error(
                    where ~ " returns more than one row for " ~ repeated
                    ~ " person(s): a trait has one value per person (aggregate per person_id)"
                ) }}
            {%- endif -%}
        {%- endif -%}
        {%- do ctsync.ensure_engage_store(kind) -%}
        {%- set store = ctsync.engage_store(kind) -%}
        {%- call statement('unpublish_' ~ kind) -%}
            delete from {{ store }} where {{ kind }}_key = '{{ definition.key }}'
        {%- endcall -%}
        {%- call statement('publish_' ~ kind) -%}
            {%- if kind == 'audience' %}
            insert into {{ store }} (audience_key, person_id, model_name, computed_at)
            select distinct
                '{{ definition.key }}',
                cast(person_id as {{ dbt.type_string() }}),
                '{{ model.name }}',
                {{ ctsync.as_of() }}
            from {{ this }}
            where person_id is not null
            {%- else %}
            insert into {{ store }} (trait_key, person_id, value, value_type, include_anonymous, model_name, computed_at)
            select
                '{{ definition.key }}',
                cast(person_id as {{ dbt.type_string() }}),
                {{ ctsync.json_value_text('value', definition.value_type) }},
                '{{ definition.value_type }}',
                {{ 'true' if definition.include_anonymous else 'false' }},
                '{{ model.name }}',
                {{ ctsync.as_of() }}
            from {{ this }}
            where person_id is not null
                and value is not null
            {%- endif %}
        {%- endcall -%}
    {%- endif -%}
{%- endmacro %}
