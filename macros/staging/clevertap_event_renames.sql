{#-
    The standard and context columns of an event table under staging names: ids first
    (source_relation, the schema the row came from, is part of every key), then strings,
    then timestamps. Used by every stg_clevertap__<event> model so the same column has the
    same name everywhere.
-#}
{% macro clevertap_event_ids() -%}
        source_relation,
        id as event_id,
        user_id,
        anonymous_id,
        context_traits_object_id as clevertap_id,
        context_traits_identity as identity
{%- endmacro %}

{% macro clevertap_event_strings() -%}
        event as event_key,
        event_text as event_name,
        context_traits_email as email,
        context_traits_phone as phone,
        context_traits_platform as platform,
        context_device_manufacturer as device_make,
        context_device_model as device_model,
        context_app_version as device_app_version,
        context_os_version as device_os_version
{%- endmacro %}

{% macro clevertap_event_timestamps() -%}
        {{ adapter.quote('timestamp') }} as occurred_at,
        received_at
{%- endmacro %}
