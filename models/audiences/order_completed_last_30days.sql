{{ config(meta={'display_name': 'Order Completed Last 30days'}) }}

{#- People with a Charged event (Segment's Order Completed) in the 30 days up to as_of. -#}

with

charged as (

    select * from {{ ref('stg_clevertap__charged') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

charged_in_window as (

    select
        coalesce(charged.user_id, anonymous_ids.person_id) as person_id
    from charged
    left join anonymous_ids
        on charged.source_relation = anonymous_ids.source_relation
        and charged.anonymous_id = anonymous_ids.anonymous_id
    where {{ in_last_days('charged.occurred_at', 30) }}

),

final as (

    select distinct person_id
    from charged_in_window
    where person_id is not null

)

select * from final
