{{ config(meta={'display_name': 'Uninstalled Users'}) }}

{#- People whose latest App Uninstalled (up to as_of) came after their latest App Launched, or who never launched since. -#}

with

app_uninstalled as (

    select * from {{ ref('stg_clevertap__app_uninstalled') }}

),

app_launched as (

    select * from {{ ref('stg_clevertap__app_launched') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

last_uninstalls as (

    select
        coalesce(app_uninstalled.user_id, anonymous_ids.person_id) as person_id,
        max(app_uninstalled.occurred_at) as last_uninstalled_at
    from app_uninstalled
    left join anonymous_ids
        on app_uninstalled.source_relation = anonymous_ids.source_relation
        and app_uninstalled.anonymous_id = anonymous_ids.anonymous_id
    where app_uninstalled.occurred_at <= {{ as_of() }}
    group by 1

),

last_launches as (

    select
        coalesce(app_launched.user_id, anonymous_ids.person_id) as person_id,
        max(app_launched.occurred_at) as last_launched_at
    from app_launched
    left join anonymous_ids
        on app_launched.source_relation = anonymous_ids.source_relation
        and app_launched.anonymous_id = anonymous_ids.anonymous_id
    where app_launched.occurred_at <= {{ as_of() }}
    group by 1

),

final as (

    select last_uninstalls.person_id
    from last_uninstalls
    left join last_launches
        on last_uninstalls.person_id = last_launches.person_id
    where last_uninstalls.person_id is not null
        and (
            last_launches.last_launched_at is null
            or last_uninstalls.last_uninstalled_at > last_launches.last_launched_at
        )

)

select * from final
