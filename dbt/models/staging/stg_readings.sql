with source as (
    select * from {{ source('telemetry', 'readings') }}
),

renamed as (
    select
        device_id,
        metric_id,
        ts as reading_at,
        value,
        batch_id,
        ingested_at
    from source
)

select * from renamed
