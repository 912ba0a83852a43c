{#- Every computed trait value is JSON text of its declared type, as the sync step sends it. -#}
with

computed_traits as (

    select * from {{ ref('engage_computed_traits') }}

),

final as (

    select *
    from computed_traits
    where not (
        (value_type = 'number' and {{ ctsync.regex_full_match('value', '-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?') }})
        or (value_type = 'boolean' and value in ('true', 'false'))
        or (value_type = 'timestamp'
            and {{ ctsync.regex_full_match('value', '"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"') }})
        or (value_type = 'string' and value like '"%"')
    )

)

select * from final
