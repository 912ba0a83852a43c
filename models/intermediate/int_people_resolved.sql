{#-
    One row per person as of as_of: a user_id, or an anonymous_id that never got one. A
    user_id is one person across sources (it is how the destination names people); an
    anonymous-only person is named by their CleverTap ID. Each person carries its latest
    known anonymous_id (the device it was last seen on), which the engage tables send along
    with the user_id, and source_relation, the source it was last seen in.
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
        identifier_pairs.source_relation,
        identifier_pairs.anonymous_id,
        identifier_pairs.first_seen_at,
        identifier_pairs.last_seen_at
    from identifier_pairs
    left join anonymous_ids
        on identifier_pairs.source_relation = anonymous_ids.source_relation
        and identifier_pairs.anonymous_id = anonymous_ids.anonymous_id

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

sources_ranked_by_recency as (

    select
        person_id,
        source_relation,
        row_number() over (
            partition by person_id
            order by last_seen_at desc, source_relation desc
        ) as recency_rank
    from pairs_attributed_to_people

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
        sources_ranked_by_recency.source_relation,
        people.first_seen_at,
        people.last_seen_at
    from people
    left join anonymous_ids_ranked_by_recency
        on people.person_id = anonymous_ids_ranked_by_recency.person_id
        and anonymous_ids_ranked_by_recency.recency_rank = 1
    left join sources_ranked_by_recency
        on people.person_id = sources_ranked_by_recency.person_id
        and sources_ranked_by_recency.recency_rank = 1

)

select * from final
