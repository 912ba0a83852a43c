with

source as (

    {{ select_source_columns(source('clevertap', 'app_uninstalled'), clevertap_event_columns([
        ['ct_source', 'string'],
        ['source', 'string'],
        ['token', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},

        ---------- strings
        {{ clevertap_event_strings() }},
        ct_source as event_source,
        {{ adapter.quote('source') }} as uninstall_detected_by,
        token as push_token,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
