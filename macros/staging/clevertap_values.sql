{#-
    CleverTap writes dates as "$D_<epoch seconds>" (DOB, custom date properties); a plain
    ISO date is accepted too. Anything else becomes NULL rather than failing the build.
-#}
{% macro clevertap_date(column) -%}
    case
        when substr({{ column }}, 1, 3) = '$D_'
            then cast({{ ctsync.epoch_seconds_to_timestamp(
                ctsync.number_or_null('substr(' ~ column ~ ', 4)', dbt.type_bigint())
            ) }} as date)
        when {{ ctsync.regex_full_match(column, '[0-9]{4}-[0-9]{2}-[0-9]{2}') }}
            then cast({{ column }} as date)
    end
{%- endmacro %}

{% macro epoch_seconds_to_timestamp(expression) -%}
    {{ return(adapter.dispatch('epoch_seconds_to_timestamp', 'ctsync')(expression)) }}
{%- endmacro %}

{% macro default__epoch_seconds_to_timestamp(expression) -%}
    to_timestamp({{ expression }})
{%- endmacro %}

{#- Text flags ('true', 'false', 't', '1', 'yes', ...) as booleans; other text is NULL. -#}
{% macro text_to_boolean(column) -%}
    case
        when lower(cast({{ column }} as {{ dbt.type_string() }})) in ('true', 't', '1', 'yes', 'y') then true
        when lower(cast({{ column }} as {{ dbt.type_string() }})) in ('false', 'f', '0', 'no', 'n') then false
    end
{%- endmacro %}

{#- The date part must be the UTC date whatever the session's time zone is. -#}
{% macro postgres__epoch_seconds_to_timestamp(expression) -%}
    (to_timestamp({{ expression }}) at time zone 'UTC')
{%- endmacro %}

{#- The same on Spark: the UTC wall clock, which a cast to date in any session time zone keeps. -#}
{% macro spark__epoch_seconds_to_timestamp(expression) -%}
    to_utc_timestamp(timestamp_seconds({{ expression }}), current_timezone())
{%- endmacro %}
