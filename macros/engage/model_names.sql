{#-
    The audience and trait models the engage models depend on (their `ref`s, for dbt's
    lineage: `dbt build -s +engage_audience_memberships` selects them all). Written by
    `ctsync build` from the files under models/audiences/ and models/traits/; a model missing
    here is still published, and the build warns until this file is written again.
-#}
{% macro default__engage_model_names(kind) -%}
    {%- set names = {
        'audience': ['acquired_by_utm_campaign', 'cart_abandoners_last_7_days', 'dormant_users', 'order_completed_last_30days', 'push_engaged_last_7_days', 'uninstalled_users'],
        'trait': ['last_app_version', 'lifetime_revenue', 'notification_clicks_last_30_days'],
    } -%}
    {{ return(names[kind]) }}
{%- endmacro %}
