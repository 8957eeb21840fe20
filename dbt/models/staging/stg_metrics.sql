with source as (
    select * from {{ source('telemetry', 'metrics') }}
),

renamed as (
    select
        metric_id,
        metric,
        unit,
        normal_min,
        normal_max,
        hard_min,
        hard_max,
        breach_threshold
    from source
)

select * from renamed
