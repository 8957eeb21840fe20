with source as (
    select * from {{ source('telemetry', 'devices') }}
),

renamed as (
    select
        device_id,
        device_name,
        site,
        zone,
        device_kind,
        metrics as metric_names,
        interval_seconds,
        installed_at,
        registered_at
    from source
)

select * from renamed
