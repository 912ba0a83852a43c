{{ config(meta={'display_name': 'Last App Version', 'value_type': 'string'}) }}

{#- The app version (CT App Version, else the device's) of the person's latest App Launched up to as_of. -#}

with

app_launched as (

    select * from {{ ref('stg_clevertap__app_launched') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

launches_ranked_by_recency as (

    select
        coalesce(app_launched.user_id, anonymous_ids.person_id) as person_id,
        coalesce(app_launched.app_version, app_launched.device_app_version) as app_version,
        row_number() over (
            partition by coalesce(app_launched.user_id, anonymous_ids.person_id)
            order by app_launched.occurred_at desc, app_launched.event_id desc
        ) as recency_rank
    from app_launched
    left join anonymous_ids
        on app_launched.source_relation = anonymous_ids.source_relation
        and app_launched.anonymous_id = anonymous_ids.anonymous_id
    where app_launched.occurred_at <= {{ as_of() }}
        and coalesce(app_launched.app_version, app_launched.device_app_version) is not null

),

final as (

    select
        person_id,
        app_version as value
    from launches_ranked_by_recency
    where recency_rank = 1
        and person_id is not null

)

select * from final
