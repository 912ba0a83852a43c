{#- The email of each user_id, which the sync adds to Identify calls as traits.email (as Engage does). -#}

with

final as (

    select * from {{ ref('int_user_emails_latest') }}

)

select * from final
