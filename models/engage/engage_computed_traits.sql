{#-
    Current computed trait values: one row per (trait, person) with a non-null value, the
    value as JSON text (123.45, "4.2.0", true, "2026-11-01T10:00:00Z"). Each trait model
    publishes to engage._trait_values right after it is built (macros/engage/publish.sql);
    this view keeps the traits that still exist and identifies each person. Anonymous-only
    people appear only for traits whose meta sets include_anonymous.
-#}

with

published_values as (

    select * from {{ engage_store('trait') }}

),

traits as (

    select * from {{ ref('engage_traits') }}

),

people as (

    select * from {{ ref('int_people_resolved') }}

),

final as (

    select
        people.user_id,
        people.anonymous_id,
        people.source_relation,
        traits.trait_key,
        traits.trait_name,
        published_values.value,
        traits.value_type,
        published_values.computed_at
    from published_values
    inner join traits
        on published_values.trait_key = traits.trait_key
    inner join people
        on published_values.person_id = people.person_id
    where people.user_id is not null
        or published_values.include_anonymous

)

select * from final
