{#-
    One row per user from profile exports (the loader's `users` table keeps each trait's
    latest non-null value), with the user attributes mParticle's CleverTap feed exposes
    (ct_name, ct_gender, ct_dob, ct_photo and the four channel opt-in flags).
-#}
with

source as (

    {{ select_source_columns(source('clevertap', 'users'), [
        ['id', 'string'],
        ['identity', 'string'],
        ['clevertap_id', 'string'],
        ['name', 'string'],
        ['email', 'string'],
        ['phone', 'string'],
        ['gender', 'string'],
        ['dob', 'string'],
        ['photo', 'string'],
        ['customer_type', 'string'],
        ['device_token', 'string'],
        ['msg_email', 'string'],
        ['msg_push', 'string'],
        ['msg_sms', 'string'],
        ['msg_whatsapp', 'string'],
        ['received_at', 'timestamp'],
    ]) }}

),

renamed as (

    select
        ---------- ids
        source_relation,
        id as user_id,
        clevertap_id,
        identity,

        ---------- strings
        name as ct_name,
        upper(gender) as ct_gender,
        photo as ct_photo,
        email,
        phone,
        customer_type,
        device_token as push_token,

        ---------- booleans
        {{ text_to_boolean('msg_email') }} as ct_email_opt_in,
        {{ text_to_boolean('msg_push') }} as ct_push_opt_in,
        {{ text_to_boolean('msg_sms') }} as ct_sms_opt_in,
        {{ text_to_boolean('msg_whatsapp') }} as ct_whatsapp_opt_in,

        ---------- dates
        {{ clevertap_date('dob') }} as ct_dob,

        ---------- timestamps
        received_at

    from source

)

select * from renamed
