{#-
    go-snakecase v1.1.0, the dbt twin of ctsync.naming.snake_case_or_empty: a word is a run
    of ASCII capitals and digits followed by a run of ASCII lowercase letters and digits;
    every other character separates words; words are lowercased and joined with "_".
    Returns "" when the name has no ASCII letter or digit. Checked against
    tests/data/naming_cases.csv by tests/models/test_snake_case_macro.py.
-#}
{% macro snake_case(name) -%}
    {%- set words = [] -%}
    {%- for word in modules.re.findall('[A-Z0-9]*[a-z0-9]*', name | string) if word -%}
        {%- do words.append(word | lower) -%}
    {%- endfor -%}
    {{- return(words | join('_')) -}}
{%- endmacro %}
