-- The hourly roll-up agrees with the 5-minute windows it was built from (counts, breaches,
-- sums, extremes). Returns the hours that disagree. Like the marts' tests
-- (macros/test_scope.sql) it checks the hours from the first one the latest hourly build
-- wrote; --vars '{test_all_rows: true}' checks every hour.
with

{%- if var('test_all_rows', false) %}
scope as (select timestamptz '-infinity' as from_hour),
{%- else %}
scope as (
    select coalesce(min(window_start), timestamptz '-infinity') as from_hour
    from {{ ref('fct_kpi_1h') }}
    where built_at >= (select max(built_at) from {{ ref('fct_kpi_1h') }})
),
{%- endif %}

five as (
    select
        device_id,
        metric_id,
        {{ kpi_bin('1 hour', 'window_start') }} as window_start,
        sum(reading_count) as reading_count,
        sum(breach_count) as breach_count,
        sum(value_sum) as value_sum,
        min(min) as min,
        max(max) as max
    from {{ ref('fct_kpi_5m') }}
    where window_start >= (select from_hour from scope)
    group by 1, 2, 3
),

hourly as (
    select * from {{ ref('fct_kpi_1h') }}
    where window_start >= (select from_hour from scope)
)

select five.*, hourly.reading_count as hourly_reading_count
from five
full outer join hourly
    on five.device_id = hourly.device_id
    and five.metric_id = hourly.metric_id
    and five.window_start = hourly.window_start
where hourly.device_id is null
    or five.device_id is null
    or five.reading_count <> hourly.reading_count
    or five.breach_count <> hourly.breach_count
    or five.min <> hourly.min
    or five.max <> hourly.max
    or abs(five.value_sum - hourly.value_sum) > 1e-9 * greatest(abs(five.value_sum), 1)
