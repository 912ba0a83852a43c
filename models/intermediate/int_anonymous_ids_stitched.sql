{#-
    Identity: one row per anonymous_id (CleverTap ID) of each source with its latest known
    user_id in that source as of as_of, the user whose identified event or profile record
    on that device is the most recent. A CleverTap ID is issued by one CleverTap account,
    so the same ID in another source is another device. Anonymous ids that never got a
    user_id are kept and flagged: they are people of their own (person_id = anonymous_id).

    To attribute an event to a person: coalesce(event.user_id, anonymous_ids.person_id),
    joining on source_relation and anonymous_id. An identified event belongs to its own
    user; an anonymous one to the latest user known on its device.
-#}
with

identifier_pairs as (

    select * from {{ ref('int_identifiers_paired') }}

),

anonymous_ids as (

    select
        source_relation,
        anonymous_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at
    from identifier_pairs
    where anonymous_id is not null
    group by 1, 2

),

users_ranked_by_recency as (

    select
        source_relation,
        anonymous_id,
        user_id,
        last_seen_at,
        row_number() over (
            partition by source_relation, anonymous_id
            order by last_seen_at desc, user_id desc
        ) as recency_rank
    from identifier_pairs
    where anonymous_id is not null
        and user_id is not null

),

latest_users as (

    select
        source_relation,
        anonymous_id,
        user_id,
        last_seen_at as user_last_seen_at
    from users_ranked_by_recency
    where recency_rank = 1

),

final as (

    select
        anonymous_ids.source_relation,
        anonymous_ids.anonymous_id,
        latest_users.user_id,
        coalesce(latest_users.user_id, anonymous_ids.anonymous_id) as person_id,
        latest_users.user_id is null as is_anonymous_only,
        anonymous_ids.first_seen_at,
        anonymous_ids.last_seen_at,
        latest_users.user_last_seen_at
    from anonymous_ids
    left join latest_users
        on anonymous_ids.source_relation = latest_users.source_relation
        and anonymous_ids.anonymous_id = latest_users.anonymous_id

)

select * from final
