{#-
    One row per element of Charged's Items array (JSON text in charged.items). CleverTap
    leaves item keys to the app; the common ones are typed, the whole item stays in
    item_json. Incremental on received_at, per source: unnesting JSON is the costly part
    at scale and an event's items never change once loaded.
-#}
{{ config(
    materialized=ctsync.keyed_incremental_materialization(),
    unique_key=['source_relation', 'charged_item_id'],
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
) }}

with

source as (

    {{ select_source_columns(source('clevertap', 'charged'), [
        ['id', 'string'],
        ['user_id', 'string'],
        ['anonymous_id', 'string'],
        ['items', 'string'],
        ['timestamp', 'timestamp'],
        ['received_at', 'timestamp'],
    ]) }}

),
{%- if is_incremental() %}

unnested_until as (

    {#- The latest Charged event of each source unnested by earlier runs. #}
    select
        source_relation,
        max(received_at) as received_at
    from {{ this }}
    group by 1

),
{%- endif %}

new_charged_events as (

    select source.*
    from source
    {%- if is_incremental() %}
    {#- Only events loaded since the last run: items of loaded events never change. #}
    left join unnested_until
        on source.source_relation = unnested_until.source_relation
    where unnested_until.received_at is null
        or source.received_at > unnested_until.received_at
    {%- endif %}

),

items as (

    select
        new_charged_events.*,
        array_elements.item_index,
        array_elements.item
    from new_charged_events
    {{ json_array_elements('new_charged_events', 'items') }}

),

renamed as (

    select
        ---------- ids
        source_relation,
        id || '-' || cast(item_index as {{ dbt.type_string() }}) as charged_item_id,
        id as event_id,
        user_id,
        anonymous_id,

        ---------- strings
        coalesce(
            {{ json_field_text('item', 'Product name') }},
            {{ json_field_text('item', 'product_name') }}
        ) as product_name,
        coalesce(
            {{ json_field_text('item', 'Category') }},
            {{ json_field_text('item', 'category') }}
        ) as product_category,
        cast(item as {{ dbt.type_string() }}) as item_json,

        ---------- numerics
        item_index,
        {{ number_or_null(
            'coalesce(' ~ json_field_text('item', 'Price') ~ ', ' ~ json_field_text('item', 'price') ~ ')',
            type_double(),
        ) }} as price,
        {{ number_or_null(
            'coalesce(' ~ json_field_text('item', 'Quantity') ~ ', ' ~ json_field_text('item', 'quantity') ~ ')',
            type_double(),
        ) }} as quantity,

        ---------- timestamps
        {{ adapter.quote('timestamp') }} as occurred_at,
        received_at

    from items

)

select * from renamed
