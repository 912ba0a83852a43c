with

source as (

    {{ select_source_columns(source('clevertap', 'app_installed'), clevertap_event_columns([
        ['ct_app_version', 'string'],
        ['ct_source', 'string'],
        ['ct_latitude', 'float'],
        ['ct_longitude', 'float'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},

        ---------- strings
        {{ clevertap_event_strings() }},
        ct_app_version as app_version,
        ct_source as event_source,

        ---------- numerics
        ct_latitude as latitude,
        ct_longitude as longitude,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
