with

source as (

    {{ select_source_columns(source('clevertap', 'notification_viewed'), clevertap_event_columns([
        ['campaign_id', 'string'],
        ['campaign_name', 'string'],
        ['campaign_type', 'string'],
        ['campaign_labels', 'string'],
        ['variant', 'string'],
        ['wzrk_id', 'string'],
        ['wzrk_pivot', 'string'],
        ['wzrk_dl', 'string'],
        ['ct_app_version', 'string'],
        ['ct_source', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},
        campaign_id,
        wzrk_id as message_id,

        ---------- strings
        {{ clevertap_event_strings() }},
        campaign_name,
        campaign_type,
        campaign_labels,
        variant,
        wzrk_pivot as ab_variation,
        wzrk_dl as deep_link,
        ct_app_version as app_version,
        ct_source as event_source,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
