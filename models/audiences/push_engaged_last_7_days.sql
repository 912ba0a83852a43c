{{ config(meta={'display_name': 'Push Engaged Last 7 Days'}) }}

{#-
    People who clicked a notification CleverTap sent (Notification Clicked) in the 7 days
    up to as_of. The event covers push, in-app, email and web messages; add
    `and notification_clicked.campaign_type = 'Push'` to keep mobile push only.
-#}

with

notification_clicked as (

    select * from {{ ref('stg_clevertap__notification_clicked') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

clicks_in_window as (

    select
        coalesce(notification_clicked.user_id, anonymous_ids.person_id) as person_id
    from notification_clicked
    left join anonymous_ids
        on notification_clicked.source_relation = anonymous_ids.source_relation
        and notification_clicked.anonymous_id = anonymous_ids.anonymous_id
    where {{ in_last_days('notification_clicked.occurred_at', 7) }}

),

final as (

    select distinct person_id
    from clicks_in_window
    where person_id is not null

)

select * from final
