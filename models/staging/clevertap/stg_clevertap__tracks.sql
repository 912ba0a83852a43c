with

source as (

    {{ select_source_columns(source('clevertap', 'tracks'), clevertap_event_columns()) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},

        ---------- strings
        {{ clevertap_event_strings() }},

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
