with

source as (

    {{ select_source_columns(source('clevertap', 'utm_visited'), clevertap_event_columns([
        ['campaign_id', 'string'],
        ['campaign_type', 'string'],
        ['install', 'string'],
        ['ct_app_version', 'string'],
        ['ct_source', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},
        campaign_id,

        ---------- strings
        {{ clevertap_event_strings() }},
        context_campaign_source as utm_source,
        context_campaign_medium as utm_medium,
        context_campaign_name as utm_campaign,
        campaign_type,
        ct_app_version as app_version,
        ct_source as event_source,

        ---------- booleans
        install = 'Y' as is_install,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
