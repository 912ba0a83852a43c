{#-
    Seeds on Spark. dbt-spark's loader puts every value between quotes unescaped (a quote
    in a value breaks the statement, a backslash is read as an escape) and writes an empty
    cell as the text 'None'. This one writes each value as a literal: NULL, true/false,
    numbers as they are, any other value as text through string_literal. dbt finds it
    before dbt-spark's own because dbt_project.yml dispatches the `dbt` namespace to ctsync
    first.
-#}
{% macro spark__load_csv_rows(model, agate_table) -%}
    {%- set batch_size = get_batch_size() -%}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set statements = [] -%}
    {%- for chunk in agate_table.rows | batch(batch_size) -%}
        {%- set sql -%}
            insert into {{ this.render() }} values
            {% for row in chunk -%}
                (
                {%- for column_name in agate_table.column_names -%}
                    {%- set type = column_override.get(column_name, adapter.convert_type(agate_table, loop.index0)) -%}
                    cast({{ ctsync.seed_value_literal(row[loop.index0]) }} as {{ type }})
                    {%- if not loop.last %}, {% endif -%}
                {%- endfor -%}
                ){%- if not loop.last %},{% endif %}
            {% endfor -%}
        {%- endset -%}
        {%- do adapter.add_query(sql, abridge_sql_log=True) -%}
        {%- if loop.first -%}
            {%- do statements.append(sql) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(statements[0]) -}}
{%- endmacro %}

{#- One CSV cell as a SQL literal (agate has typed it: None, a bool, a Decimal, a date or text). -#}
{% macro seed_value_literal(value) -%}
    {%- if value is none -%}
        null
    {%- elif value is sameas true or value is sameas false -%}
        {{ 'true' if value else 'false' }}
    {%- elif value is number -%}
        {{ value }}
    {%- else -%}
        {{ ctsync.string_literal(value) }}
    {%- endif -%}
{%- endmacro %}
