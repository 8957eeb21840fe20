{{ config(
    materialized='incremental',
    unique_key=['device_id', 'metric_id', 'window_start'],
    indexes=[
        {'columns': ['device_id', 'metric_id', 'window_start'], 'unique': True},
        {'columns': ['window_start']},
    ],
    post_hook="{{ built_at_index() }}",
) }}

{%- set bound = kpi_lookback_bound('5 minutes') %}

with readings as (
    select * from {{ ref('int_readings_joined_to_metrics') }}
    {%- if bound is not none %}
    -- late-data lookback: rebuild windows from max(window_start) - late_horizon_minutes on
    where reading_at >= {{ bound }}
    {%- endif %}
),

totals as (
    select
        {{ kpi_bin('5 minutes', 'reading_at') }} as window_start,
        device_id,
        metric_id,
        max(metric) as metric,
        count(*) as reading_count,
        sum(value) as value_sum,
        var_pop(value) * count(*) as value_m2,
        min(value) as min,
        max(value) as max,
        (array_agg(value order by reading_at desc))[1] as last_value,
        max(reading_at) as last_reading_at,
        count(*) filter (where is_breach) as breach_count
    from readings
    group by 1, device_id, metric_id
)

{{ kpi_device_columns(300) }}
