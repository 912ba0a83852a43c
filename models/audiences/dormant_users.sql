{{ config(meta={'display_name': 'Dormant Users'}) }}

{#- People who installed the app (App Installed up to as_of) and did not launch it (App Launched) in the 14 days up to as_of. -#}

with

app_installed as (

    select * from {{ ref('stg_clevertap__app_installed') }}

),

app_launched as (

    select * from {{ ref('stg_clevertap__app_launched') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

installers as (

    select distinct
        coalesce(app_installed.user_id, anonymous_ids.person_id) as person_id
    from app_installed
    left join anonymous_ids
        on app_installed.source_relation = anonymous_ids.source_relation
        and app_installed.anonymous_id = anonymous_ids.anonymous_id
    where app_installed.occurred_at <= {{ as_of() }}

),

recent_launchers as (

    select distinct
        coalesce(app_launched.user_id, anonymous_ids.person_id) as person_id
    from app_launched
    left join anonymous_ids
        on app_launched.source_relation = anonymous_ids.source_relation
        and app_launched.anonymous_id = anonymous_ids.anonymous_id
    where {{ in_last_days('app_launched.occurred_at', 14) }}

),

final as (

    select installers.person_id
    from installers
    left join recent_launchers
        on installers.person_id = recent_launchers.person_id
    where installers.person_id is not null
        and recent_launchers.person_id is null

)

select * from final
