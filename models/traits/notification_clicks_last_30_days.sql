{{ config(meta={'display_name': 'Notification Clicks Last 30 Days', 'value_type': 'number'}) }}

{#-
    Notification Clicked events per person in the 30 days up to as_of. Everyone who ever
    clicked gets a value, 0 once their clicks age out of the window, so the destination
    sees the drop instead of keeping the last count.
-#}

with

notification_clicked as (

    select * from {{ ref('stg_clevertap__notification_clicked') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

clicks_by_person as (

    select
        coalesce(notification_clicked.user_id, anonymous_ids.person_id) as person_id,
        notification_clicked.occurred_at
    from notification_clicked
    left join anonymous_ids
        on notification_clicked.source_relation = anonymous_ids.source_relation
        and notification_clicked.anonymous_id = anonymous_ids.anonymous_id
    where notification_clicked.occurred_at <= {{ as_of() }}

),

final as (

    select
        person_id,
        sum(case when {{ in_last_days('occurred_at', 30) }} then 1 else 0 end) as value
    from clicks_by_person
    where person_id is not null
    group by 1

)

select * from final
