{#-
    One row per person as of as_of: a user_id, or an anonymous_id that never got one. Each
    person carries its latest known anonymous_id (the device it was last seen on), which
    the engage tables send along with the user_id.
-#}
with

identifier_pairs as (

    select * from {{ ref('int_identifiers_paired') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

pairs_attributed_to_people as (

    select
        coalesce(identifier_pairs.user_id, anonymous_ids.person_id) as person_id,
        coalesce(identifier_pairs.user_id, anonymous_ids.user_id) as user_id,
        identifier_pairs.anonymous_id,
        identifier_pairs.first_seen_at,
        identifier_pairs.last_seen_at
    from identifier_pairs
    left join anonymous_ids
        on identifier_pairs.anonymous_id = anonymous_ids.anonymous_id

),

anonymous_ids_ranked_by_recency as (

    select
        person_id,
        anonymous_id,
        row_number() over (
            partition by person_id
            order by last_seen_at desc, anonymous_id desc
        ) as recency_rank
    from pairs_attributed_to_people
    where anonymous_id is not null

),

people as (

    select
        person_id,
        max(user_id) as user_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at
    from pairs_attributed_to_people
    group by 1

),

final as (

    select
        people.person_id,
        people.user_id,
        anonymous_ids_ranked_by_recency.anonymous_id,
        people.user_id is null as is_anonymous,
        people.first_seen_at,
        people.last_seen_at
    from people
    left join anonymous_ids_ranked_by_recency
        on people.person_id = anonymous_ids_ranked_by_recency.person_id
        and anonymous_ids_ranked_by_recency.recency_rank = 1

)

select * from final
