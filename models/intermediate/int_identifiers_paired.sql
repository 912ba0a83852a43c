{#-
    Every (anonymous_id, user_id) pair observed up to as_of in each source, from events and
    from profile records, with when it was first and last seen. user_id is NULL for what a
    device did anonymously. The identity models below are built from these pairs alone.
    A CleverTap ID belongs to one CleverTap account, so pairs are kept per source.
-#}
with

tracks as (

    select * from {{ ref('stg_clevertap__tracks') }}

),

identifies as (

    select * from {{ ref('stg_clevertap__identifies') }}

),

observations as (

    select
        source_relation,
        anonymous_id,
        user_id,
        occurred_at as observed_at
    from tracks
    where occurred_at <= {{ as_of() }}

    union all

    select
        source_relation,
        anonymous_id,
        user_id,
        identified_at as observed_at
    from identifies
    where identified_at <= {{ as_of() }}

),

final as (

    select
        source_relation,
        anonymous_id,
        user_id,
        min(observed_at) as first_seen_at,
        max(observed_at) as last_seen_at,
        count(*) as observations
    from observations
    where anonymous_id is not null
        or user_id is not null
    group by 1, 2, 3

)

select * from final
