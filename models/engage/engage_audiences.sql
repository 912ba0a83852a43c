{#- One row per audience model found in models/audiences/ (read from the dbt graph). -#}
{{ ctsync.engage_model_refs('audience') }}

with

audiences as (

    {{ engage_catalog_sql('audience') }}

),

final as (

    select
        cast(audience_key as {{ dbt.type_string() }}) as audience_key,
        cast(audience_name as {{ dbt.type_string() }}) as audience_name,
        cast(include_anonymous as {{ dbt.type_boolean() }}) as include_anonymous,
        cast(model_name as {{ dbt.type_string() }}) as model_name
    from audiences

)

select * from final
