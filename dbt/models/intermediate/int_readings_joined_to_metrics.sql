-- Readings with their metric name and whether they breach the metric's threshold
-- (never, when the metric has none). Ephemeral: inlined into fct_kpi_5m, where the
-- incremental filter on reading_at pushes down to the readings partitions.
with readings as (
    select * from {{ ref('stg_readings') }}
),

metrics as (
    select * from {{ ref('stg_metrics') }}
),

joined as (
    select
        readings.device_id,
        readings.metric_id,
        metrics.metric,
        readings.reading_at,
        readings.value,
        coalesce(readings.value > metrics.breach_threshold, false) as is_breach
    from readings
    left join metrics
        on readings.metric_id = metrics.metric_id
)

select * from joined
