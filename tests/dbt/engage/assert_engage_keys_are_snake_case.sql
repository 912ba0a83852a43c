{#- Audience and trait keys are non-empty go-snakecase words joined by single underscores. -#}
with

audiences as (

    select * from {{ ref('engage_audiences') }}

),

traits as (

    select * from {{ ref('engage_traits') }}

),

keys as (

    select audience_key as engage_key from audiences
    union all
    select trait_key as engage_key from traits

),

final as (

    select engage_key
    from keys
    where not {{ ctsync.regex_full_match('engage_key', '[a-z0-9]+(_[a-z0-9]+)*') }}

)

select * from final
