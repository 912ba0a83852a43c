with

source as (

    {{ select_source_columns(source('clevertap', 'charged'), clevertap_event_columns([
        ['charged_id', 'string'],
        ['amount', 'float'],
        ['currency', 'string'],
        ['payment_mode', 'string'],
        ['delivery_by', 'string'],
        ['items', 'string'],
        ['ct_app_version', 'string'],
        ['ct_source', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},
        charged_id,

        ---------- strings
        {{ clevertap_event_strings() }},
        currency,
        payment_mode,
        delivery_by,
        items as items_json,
        ct_app_version as app_version,
        ct_source as event_source,

        ---------- numerics
        amount,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
