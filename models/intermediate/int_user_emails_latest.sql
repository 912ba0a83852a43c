{#-
    One row per user_id with the email last seen for it up to as_of, from profile records and
    from events' profiles: what Identify calls carry in traits.email, as Engage adds it.
-#}
with

identifies as (

    select * from {{ ref('stg_clevertap__identifies') }}

),

tracks as (

    select * from {{ ref('stg_clevertap__tracks') }}

),

emails_seen as (

    select user_id, email, identified_at as seen_at
    from identifies
    where user_id is not null
        and email is not null
        and email <> ''
        and identified_at <= {{ as_of() }}

    union all

    select user_id, email, occurred_at as seen_at
    from tracks
    where user_id is not null
        and email is not null
        and email <> ''
        and occurred_at <= {{ as_of() }}

),

emails_ranked_by_recency as (

    select
        user_id,
        email,
        row_number() over (
            partition by user_id
            order by seen_at desc, email desc
        ) as recency_rank
    from emails_seen

),

final as (

    select
        user_id,
        email
    from emails_ranked_by_recency
    where recency_rank = 1

)

select * from final
