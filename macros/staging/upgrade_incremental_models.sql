{#-
    on-run-start: an incremental table built before staging carried `source_relation` is
    dropped, so this run builds it again in full (it is keyed by source_relation now, and
    its old rows have none). Runs only for `dbt build` and `dbt run`.
-#}
{% macro drop_incremental_tables_without_source_relation() -%}
    {%- if execute and flags.WHICH in ('build', 'run') -%}
        {%- for node in graph.nodes.values()
            if node.resource_type == 'model'
            and node.package_name == 'ctsync'
            and node.config.materialized == 'incremental' -%}
            {%- set relation = adapter.get_relation(
                database=node.database,
                schema=node.schema,
                identifier=node.alias,
            ) -%}
            {%- if relation is not none -%}
                {%- set columns = adapter.get_columns_in_relation(relation)
                    | map(attribute='name') | map('lower') | list -%}
                {%- if 'source_relation' not in columns -%}
                    {%- do log(node.name ~ ' has no source_relation yet: it is built again in full', info=true) -%}
                    {%- call statement('drop_' ~ node.name) -%}
                        {{ get_drop_sql(relation) }}
                    {%- endcall -%}
                    {#- Committed at once: the model is built again on another connection. -#}
                    {%- do adapter.commit() -%}
                    {%- do adapter.cache_dropped(relation) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
