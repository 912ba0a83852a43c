with

source as (

    {{ select_source_columns(source('clevertap', 'notification_sent'), clevertap_event_columns([
        ['campaign_id', 'string'],
        ['campaign_name', 'string'],
        ['campaign_type', 'string'],
        ['campaign_labels', 'string'],
        ['variant', 'string'],
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
        campaign_name,
        campaign_type,
        campaign_labels,
        variant,
        ct_source as event_source,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
