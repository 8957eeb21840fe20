-- Per site, zone, metric and 15-minute window, for heatmaps. Rolled up from fct_kpi_15m;
-- completeness counts every device of the zone that lists the metric and was installed
-- before the window ended, so a silent device lowers it.
{{ config(
    materialized='incremental',
    unique_key=['site', 'zone', 'metric_id', 'window_start'],
    indexes=[
        {'columns': ['site', 'zone', 'metric_id', 'window_start'], 'unique': True},
        {'columns': ['window_start']},
    ],
    post_hook="{{ built_at_index() }}",
) }}

{%- set bound = kpi_lookback_bound('15 minutes') %}

with kpi as (
    select * from {{ ref('fct_kpi_15m') }}
    {%- if bound is not none %}
    where window_start >= {{ bound }}
    {%- endif %}
),

devices as (
    select * from {{ ref('dim_devices') }}
),

metrics as (
    select * from {{ ref('stg_metrics') }}
),

observed as (
    select
        kpi.window_start,
        devices.site,
        devices.zone,
        kpi.metric_id,
        max(kpi.metric) as metric,
        count(distinct kpi.device_id) as device_count,
        sum(kpi.reading_count)::bigint as reading_count,
        sum(kpi.value_sum) as value_sum,
        min(kpi.min) as min,
        max(kpi.max) as max,
        sum(kpi.breach_count)::bigint as breach_count
    from kpi
    inner join devices
        on kpi.device_id = devices.device_id
    group by kpi.window_start, devices.site, devices.zone, kpi.metric_id
),

expected as (
    select
        observed.window_start,
        observed.site,
        observed.zone,
        observed.metric_id,
        count(*) as expected_device_count,
        sum(900::float8 / devices.interval_seconds) as expected_count
    from observed
    inner join metrics
        on observed.metric_id = metrics.metric_id
    inner join devices
        on observed.site = devices.site
        and observed.zone = devices.zone
        and metrics.metric = any(devices.metric_names)
        and devices.installed_at < observed.window_start + interval '900 seconds'
    group by observed.window_start, observed.site, observed.zone, observed.metric_id
)

select
    observed.window_start,
    observed.window_start + interval '900 seconds' as window_end,
    observed.site,
    observed.zone,
    observed.metric_id,
    observed.metric,
    observed.device_count,
    coalesce(expected.expected_device_count, 0) as expected_device_count,
    observed.reading_count,
    observed.value_sum / observed.reading_count as mean,
    observed.min,
    observed.max,
    observed.breach_count,
    expected.expected_count,
    observed.reading_count / expected.expected_count as completeness,
    observed.value_sum,
    now() as built_at
from observed
left join expected
    on observed.window_start = expected.window_start
    and observed.site = expected.site
    and observed.zone = expected.zone
    and observed.metric_id = expected.metric_id
