{#- True when the whole of `expression` matches the regular expression `pattern`. -#}
{% macro regex_full_match(expression, pattern) -%}
    {{ return(adapter.dispatch('regex_full_match', 'ctsync')(expression, pattern)) }}
{%- endmacro %}

{% macro default__regex_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__regex_full_match(expression, pattern) -%}
    ({{ expression }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{#- Spark's rlike finds a match anywhere, and its string literals read backslash escapes. -#}
{% macro spark__regex_full_match(expression, pattern) -%}
    ({{ expression }} rlike {{ ctsync.string_literal('^(?:' ~ pattern ~ ')$') }})
{%- endmacro %}
