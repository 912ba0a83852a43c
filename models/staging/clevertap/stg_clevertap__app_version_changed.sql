with

source as (

    {{ select_source_columns(source('clevertap', 'app_version_changed'), clevertap_event_columns([
        ['ct_app_version', 'string'],
        ['ct_app_version_prev', 'string'],
        ['ct_source', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},

        ---------- strings
        {{ clevertap_event_strings() }},
        ct_app_version as app_version,
        ct_app_version_prev as previous_app_version,
        ct_source as event_source,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
