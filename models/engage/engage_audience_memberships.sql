{#-
    Current members of every audience: one row per (audience, person). Each audience model
    publishes its members to engage._audience_members right after it is built (see
    macros/engage/publish.sql); this view keeps the audiences that still exist and gives
    each person its user_id, latest anonymous_id and the source it was last seen in.
    Anonymous-only people appear only in audiences that include anonymous users.
-#}

with

published_members as (

    select * from {{ engage_store('audience') }}

),

audiences as (

    select * from {{ ref('engage_audiences') }}

),

people as (

    select * from {{ ref('int_people_resolved') }}

),

final as (

    select
        people.user_id,
        people.anonymous_id,
        people.source_relation,
        audiences.audience_key,
        audiences.audience_name,
        audiences.include_anonymous,
        true as is_member,
        published_members.computed_at
    from published_members
    inner join audiences
        on published_members.audience_key = audiences.audience_key
    inner join people
        on published_members.person_id = people.person_id
    where people.user_id is not null
        or audiences.include_anonymous

)

select * from final
