{#- Shared pieces of the KPI models. All windows are tumbling, UTC, aligned to 2000-01-01. -#}

{% macro kpi_origin() -%}
    timestamptz '2000-01-01 00:00:00+00'
{%- endmacro %}

{% macro kpi_bin(grain, ts) -%}
    date_bin(interval '{{ grain }}', {{ ts }}, {{ kpi_origin() }})
{%- endmacro %}


{#- Late-data lookback of an incremental KPI model.

    Returns none on a full build (no filter), else a SQL literal:
        date_bin(grain, max(window_start) of {{ this }} - var('late_horizon_minutes'))
    Every window starting at or after it is recomputed from input rows at or after it, so a
    late reading inside the horizon updates its window on the next run. The bound is aligned to
    the model's grain (a window is never rebuilt from half its rows) and is resolved at compile
    time into an immutable `to_timestamp(<epoch>)`, so PostgreSQL prunes readings partitions
    while planning.

    var('rebuild_from') (an ISO timestamp, optional) moves the bound back to that time: a
    backfill of older history passes its window start so its windows get built too. The
    pipeline passes it as TELEMETRY_DBT_REBUILD_FROM (run_dbt's rebuild_from) instead: dbt
    re-parses the whole project whenever --vars change, and this value changes every run. -#}
{% macro kpi_lookback_bound(grain) %}
    {%- if not execute or not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set horizon = var('late_horizon_minutes', 120) | int -%}
    {%- set rebuild_from = var('rebuild_from', none) or env_var('TELEMETRY_DBT_REBUILD_FROM', '') -%}
    {%- set query -%}
        select extract(epoch from least(
            {{ kpi_bin(grain, 'max(window_start) - make_interval(mins => ' ~ horizon ~ ')') }}
            {%- if rebuild_from %},
            {{ kpi_bin(grain, "'" ~ rebuild_from ~ "'::timestamptz") }}
            {%- endif %}
        ))::bigint
        from {{ this }}
    {%- endset -%}
    {%- set epoch = run_query(query).columns[0].values()[0] -%}
    {%- if epoch is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('to_timestamp(' ~ (epoch | int) ~ ')') }}
{% endmacro %}


{#- The KPI columns every per-device grain ends with, given a CTE `totals` with
    device_id, metric_id, metric, window_start, reading_count, value_sum, value_m2, min,
    max, last_value, last_reading_at, breach_count (value_m2: sum of squared deviations
    from the window mean, so windows combine exactly). -#}
{% macro kpi_device_columns(window_seconds) %}
    select
        totals.window_start,
        totals.window_start + interval '{{ window_seconds }} seconds' as window_end,
        totals.device_id,
        totals.metric_id,
        totals.metric,
        totals.reading_count,
        totals.value_sum / totals.reading_count as mean,
        totals.min,
        totals.max,
        case
            when totals.reading_count >= 2
                then sqrt(totals.value_m2 / (totals.reading_count - 1))
        end as stddev,
        totals.last_value,
        totals.last_reading_at,
        totals.breach_count,
        {{ window_seconds }}::float8 / devices.interval_seconds as expected_count,
        totals.reading_count * devices.interval_seconds::float8 / {{ window_seconds }} as completeness,
        totals.value_sum,
        totals.value_m2,
        now() as built_at
    from totals
    left join {{ ref('stg_devices') }} as devices
        on totals.device_id = devices.device_id
{% endmacro %}


{#- A coarser per-device grain rolled up exactly from a finer one (counts and sums add,
    min/max combine, M2 combines with Chan's formula, last value of the latest sub-window). -#}
{% macro kpi_rollup(fine_model, grain, window_seconds) %}
{%- set bound = kpi_lookback_bound(grain) %}

with fine as (
    select * from {{ ref(fine_model) }}
    {%- if bound is not none %}
    where window_start >= {{ bound }}
    {%- endif %}
),

binned as (
    select
        {{ kpi_bin(grain, 'window_start') }} as coarse_start,
        fine.*
    from fine
),

with_coarse_mean as (
    select
        binned.*,
        sum(value_sum) over coarse / sum(reading_count) over coarse as coarse_mean
    from binned
    window coarse as (partition by device_id, metric_id, coarse_start)
),

totals as (
    select
        coarse_start as window_start,
        device_id,
        metric_id,
        max(metric) as metric,
        sum(reading_count)::bigint as reading_count,
        sum(value_sum) as value_sum,
        sum(value_m2 + reading_count * (value_sum / reading_count - coarse_mean) ^ 2) as value_m2,
        min(min) as min,
        max(max) as max,
        (array_agg(last_value order by window_start desc))[1] as last_value,
        max(last_reading_at) as last_reading_at,
        sum(breach_count)::bigint as breach_count
    from with_coarse_mean
    group by coarse_start, device_id, metric_id
)

{{ kpi_device_columns(window_seconds) }}
{% endmacro %}
