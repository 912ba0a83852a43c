{{ config(meta={'display_name': 'Acquired By UTM Campaign'}) }}

{#- People who arrived through a campaign link: a UTM Visited event with a utm_campaign, up to as_of. -#}

with

utm_visited as (

    select * from {{ ref('stg_clevertap__utm_visited') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

campaign_visits as (

    select
        coalesce(utm_visited.user_id, anonymous_ids.person_id) as person_id
    from utm_visited
    left join anonymous_ids
        on utm_visited.source_relation = anonymous_ids.source_relation
        and utm_visited.anonymous_id = anonymous_ids.anonymous_id
    where utm_visited.occurred_at <= {{ as_of() }}
        and utm_visited.utm_campaign is not null

),

final as (

    select distinct person_id
    from campaign_visits
    where person_id is not null

)

select * from final
