{#- Anonymous-only people (no user_id) are members only of audiences that include anonymous users, and every member can be reached by some id. -#}
with

memberships as (

    select * from {{ ref('engage_audience_memberships') }}

),

final as (

    select *
    from memberships
    where (user_id is null and not include_anonymous)
        or (user_id is null and anonymous_id is null)

)

select * from final
