with

source as (

    {{ select_source_columns(source('clevertap', 'product_viewed'), clevertap_event_columns([
        ['product_name', 'string'],
        ['category', 'string'],
        ['price', 'float'],
        ['discount_code', 'string'],
        ['discount_percent', 'float'],
        ['ct_app_version', 'string'],
        ['ct_source', 'string'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},

        ---------- strings
        {{ clevertap_event_strings() }},
        product_name,
        category as product_category,
        discount_code,
        ct_app_version as app_version,
        ct_source as event_source,

        ---------- numerics
        price,
        discount_percent,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
