{{ config(meta={'display_name': 'Lifetime Revenue', 'value_type': 'number'}) }}

{#- Sum of Charged Amount per person, over every purchase up to as_of, rounded to cents. -#}

with

charged as (

    select * from {{ ref('stg_clevertap__charged') }}

),

anonymous_ids as (

    select * from {{ ref('int_anonymous_ids_stitched') }}

),

charged_by_person as (

    select
        coalesce(charged.user_id, anonymous_ids.person_id) as person_id,
        charged.amount
    from charged
    left join anonymous_ids
        on charged.source_relation = anonymous_ids.source_relation
        and charged.anonymous_id = anonymous_ids.anonymous_id
    where charged.occurred_at <= {{ as_of() }}

),

final as (

    select
        person_id,
        round(cast(sum(amount) as {{ dbt.type_numeric() }}), 2) as value
    from charged_by_person
    where person_id is not null
    group by 1

)

select * from final
