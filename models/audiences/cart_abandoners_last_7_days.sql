{{ config(meta={'display_name': 'Cart Abandoners Last 7 Days', 'include_anonymous': true}) }}

{#-
    People who added to cart in the 7 days up to as_of and have not bought (Charged)
    since their latest add. Anonymous visitors count too (Engage's "Include Anonymous
    Users"): they are synced by anonymous_id alone.
-#}

with

added_to_cart as (

    select * from {{ ref('stg_clevertap__added_to_cart') }}

),

charged as (

    select * from {{ ref('stg_clevertap__charged') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

last_cart_additions as (

    select
        coalesce(added_to_cart.user_id, anonymous_ids.person_id) as person_id,
        max(added_to_cart.occurred_at) as last_added_at
    from added_to_cart
    left join anonymous_ids
        on added_to_cart.source_relation = anonymous_ids.source_relation
        and added_to_cart.anonymous_id = anonymous_ids.anonymous_id
    where {{ in_last_days('added_to_cart.occurred_at', 7) }}
    group by 1

),

last_purchases as (

    select
        coalesce(charged.user_id, anonymous_ids.person_id) as person_id,
        max(charged.occurred_at) as last_charged_at
    from charged
    left join anonymous_ids
        on charged.source_relation = anonymous_ids.source_relation
        and charged.anonymous_id = anonymous_ids.anonymous_id
    where charged.occurred_at <= {{ as_of() }}
    group by 1

),

final as (

    select last_cart_additions.person_id
    from last_cart_additions
    left join last_purchases
        on last_cart_additions.person_id = last_purchases.person_id
    where last_cart_additions.person_id is not null
        and (
            last_purchases.last_charged_at is null
            or last_purchases.last_charged_at < last_cart_additions.last_added_at
        )

)

select * from final
