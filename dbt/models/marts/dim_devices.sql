with devices as (
    select * from {{ ref('stg_devices') }}
)

select
    device_id,
    device_name,
    site,
    zone,
    device_kind,
    metric_names,
    cardinality(metric_names) as metric_count,
    interval_seconds,
    installed_at,
    registered_at,
    now() as built_at
from devices
