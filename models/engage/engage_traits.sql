{#- One row per computed trait model found in models/traits/ (read from the dbt graph). -#}
{{ ctsync.engage_model_refs('trait') }}

with

traits as (

    {{ engage_catalog_sql('trait') }}

),

final as (

    select
        cast(trait_key as {{ dbt.type_string() }}) as trait_key,
        cast(trait_name as {{ dbt.type_string() }}) as trait_name,
        cast(value_type as {{ dbt.type_string() }}) as value_type,
        cast(model_name as {{ dbt.type_string() }}) as model_name
    from traits

)

select * from final
