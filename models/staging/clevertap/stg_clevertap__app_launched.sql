with

source as (

    {{ select_source_columns(source('clevertap', 'app_launched'), clevertap_event_columns([
        ['ct_app_version', 'string'],
        ['ct_sdk_version', 'string'],
        ['ct_os_version', 'string'],
        ['ct_source', 'string'],
        ['ct_network_carrier', 'string'],
        ['ct_network_type', 'string'],
        ['ct_connected_to_wifi', 'boolean'],
        ['ct_session_id', 'string'],
        ['ct_latitude', 'float'],
        ['ct_longitude', 'float'],
    ])) }}

),

renamed as (

    select
        ---------- ids
        {{ clevertap_event_ids() }},
        ct_session_id as session_id,

        ---------- strings
        {{ clevertap_event_strings() }},
        ct_app_version as app_version,
        ct_sdk_version as sdk_version,
        ct_os_version as os_version,
        ct_source as event_source,
        ct_network_carrier as network_carrier,
        ct_network_type as network_type,

        ---------- numerics
        ct_latitude as latitude,
        ct_longitude as longitude,

        ---------- booleans
        {#- The loader gives "CT Connected To WiFi" and ct_connected_to_wifi one column. #}
        ct_connected_to_wifi as is_connected_to_wifi,

        ---------- timestamps
        {{ clevertap_event_timestamps() }}

    from source

)

select * from renamed
