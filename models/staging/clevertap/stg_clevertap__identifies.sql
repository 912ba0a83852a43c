with

source as (

    {{ select_source_columns(source('clevertap', 'identifies'), [
        ['id', 'string'],
        ['user_id', 'string'],
        ['anonymous_id', 'string'],
        ['identity', 'string'],
        ['clevertap_id', 'string'],
        ['email', 'string'],
        ['phone', 'string'],
        ['timestamp', 'timestamp'],
        ['received_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ---------- ids
        source_relation,
        id as identify_id,
        user_id,
        anonymous_id,
        clevertap_id,
        identity,

        ---------- strings
        email,
        phone,

        ---------- timestamps
        {{ adapter.quote('timestamp') }} as identified_at,
        received_at

    from source

)

select * from renamed
