{#-
    The instant memberships and trait values are computed at: the `as_of` var (ISO-8601;
    a date means midnight UTC, a time without an offset means UTC), or the start of the dbt
    run when the var is empty. Every model of one run sees the same instant.

        dbt build --vars '{as_of: "2026-11-20T00:00:00Z"}'
-#}
{% macro as_of_datetime() -%}
    {%- set raw = var('as_of', '') -%}
    {%- set text = (raw | string | trim) if raw is not none else '' -%}
    {%- if text in ('', 'None', 'now') -%}
        {%- set moment = run_started_at -%}
    {%- else -%}
        {%- set pattern = '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' -%}
        {%- if not modules.re.match(pattern, text) -%}
            {{ exceptions.raise_compiler_error(
                "var as_of must be an ISO-8601 date or time such as 2026-11-20 or "
                ~ "2026-11-20T10:00:00Z, not '" ~ text ~ "'"
            ) }}
        {%- endif -%}
        {%- set normalized = text[:-1] ~ '+00:00' if text.endswith('Z') else text -%}
        {%- set moment = modules.datetime.datetime.fromisoformat(normalized) -%}
    {%- endif -%}
    {%- if moment.tzinfo is none -%}
        {%- set moment = moment.replace(tzinfo=modules.pytz.utc) -%}
    {%- endif -%}
    {{- return(moment.astimezone(modules.pytz.utc)) -}}
{%- endmacro %}

{#-
    SQL for the as_of instant, or for `days_before` days before it (the start of a
    "last N days" window). Windows are half-open on the left: `x > as_of(30) and x <= as_of()`.
-#}
{% macro as_of(days_before=0) -%}
    {%- set moment = ctsync.as_of_datetime() - modules.datetime.timedelta(days=days_before) -%}
    cast('{{ moment.strftime("%Y-%m-%d %H:%M:%S.%f") }}+00:00' as {{ ctsync.type_timestamptz() }})
{%- endmacro %}

{#- `column` falls in the `days` days up to and including as_of. -#}
{% macro in_last_days(column, days) -%}
    ({{ column }} > {{ ctsync.as_of(days) }} and {{ column }} <= {{ ctsync.as_of() }})
{%- endmacro %}
