"""The normal signal: pure functions of (seed, device_id, metric, timestamp), no state.

Time is integer seconds since the Unix epoch (UTC). Sites share one clock: the office schedule is
in UTC hours (no per-site time zones, no holidays). Occupancy follows a weekday office day; CO2,
temperature and humidity follow the *expected* occupancy with a lag (air takes time to fill and
warm), temperature adds an outdoor daily cycle and a night/weekend HVAC setback, and humidity
follows temperature. Each device has its own capacity and offsets; slow "weather" wander comes
from smooth value noise, fast sensor noise is white. Values returned here are unrounded; the
sensor resolution (RESOLUTION) is applied after anomalies, in simulate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulator.rng import F64, Stream, hash64, normal, uniform

DAY_S = 86_400
HOUR_S = 3_600
# Decimal places a real sensor reports, by metric_id (CO2 and people counts are integers).
RESOLUTION: dict[int, int] = {1: 0, 2: 2, 3: 1, 4: 0}

Ints = npt.ArrayLike


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def _hour(ts_s: npt.NDArray[np.int64]) -> F64:
    return (ts_s % DAY_S) / HOUR_S


def is_weekday(ts_s: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    # 1970-01-01 was a Thursday, so (days + 3) % 7 is 0 on Mondays.
    return ((ts_s // DAY_S) + 3) % 7 < 5


def office_presence(ts_s: Ints) -> F64:
    """Share of a zone's capacity present: ~1 on weekday working hours, a lunch dip, ~0 at night."""
    ts = np.asarray(ts_s, dtype=np.int64)
    h = _hour(ts)
    workday = (
        _sigmoid((h - 8.5) / 0.5)
        * _sigmoid((17.5 - h) / 0.6)
        * (1.0 - 0.3 * np.exp(-(((h - 12.5) / 0.5) ** 2)))
    )
    weekend = 0.05 * _sigmoid((h - 10.0) / 0.8) * _sigmoid((16.0 - h) / 0.8)
    return np.where(is_weekday(ts), workday, weekend)


def _hvac_on(ts: npt.NDArray[np.int64]) -> F64:
    h = _hour(ts)
    return np.where(is_weekday(ts), _sigmoid((h - 6.0) / 0.5) * _sigmoid((19.0 - h) / 0.5), 0.0)


def smooth_noise(seed: int, stream: Stream, device_id: Ints, ts_s: Ints, period_s: int) -> F64:
    """Unit-variance noise that wanders smoothly: normal knots every period_s, eased between.

    A pure function of time (not a random walk), so any instant can be evaluated on its own.
    """
    ts = np.asarray(ts_s, dtype=np.int64)
    j = ts // period_s
    w = 0.5 - 0.5 * np.cos(np.pi * (ts - j * period_s) / period_s)
    dev = np.asarray(device_id)
    if ts.ndim == 2 and ts.shape[0] == 1 and dev.ndim == 2 and dev.shape[1] == 1:
        # A (devices x times) grid: draw each (device, knot) once and gather; same draws as below.
        j0 = int(j.min())
        knots = normal(hash64(seed, stream, dev, np.arange(j0, int(j.max()) + 2)[None, :]))
        # take, not knots[:, i]: that returns a Fortran-ordered array, slowing all that follows.
        z0, z1 = np.take(knots, j[0] - j0, axis=1), np.take(knots, j[0] - j0 + 1, axis=1)
    else:
        z0 = normal(hash64(seed, stream, device_id, j))
        z1 = normal(hash64(seed, stream, device_id, j + 1))
    # ((1 - w) z0 + w z1) / sqrt((1 - w)^2 + w^2), in place on the fresh z0, z1 (same bits).
    # Renormalise: a blend of two independent normals has variance (1-w)^2 + w^2 < 1.
    z0 *= 1.0 - w
    z1 *= w
    z0 += z1
    z0 /= np.sqrt((1.0 - w) ** 2 + w**2)
    return z0


def _white(seed: int, metric_id: int, device_id: Ints, ts_s: Ints) -> F64:
    return normal(hash64(seed, Stream.NOISE, device_id, metric_id, ts_s))


def _device_normal(seed: int, stream: Stream, device_id: Ints) -> F64:
    return normal(hash64(seed, stream, device_id))


def capacity(seed: int, device_id: Ints) -> F64:
    """People a device's zone holds on a full day (5 to 12)."""
    return 5.0 + 7.0 * uniform(hash64(seed, Stream.CAPACITY, device_id))


def expected_occupancy(seed: int, device_id: Ints, ts_s: Ints) -> F64:
    """Mean head count: capacity x office schedule x a slow +-20% day-to-day wander."""
    wander = 1.0 + 0.2 * smooth_noise(seed, Stream.SMOOTH_OCCUPANCY, device_id, ts_s, 1800)
    return np.maximum(capacity(seed, device_id) * office_presence(ts_s) * wander, 0.0)


# How far each metric's expected occupancy lags the room's (air takes time to fill and warm).
_LAG_CO2 = 1200  # ~20 min to build up
_LAG_TEMPERATURE = 1800  # body heat, ~30 min
_LAG_HUMIDITY = 900  # breath moisture
_LAGS = (0, _LAG_CO2, _LAG_TEMPERATURE, _LAG_HUMIDITY)


def occupancy(seed: int, device_id: Ints, ts_s: Ints) -> F64:
    return _occupancy(seed, device_id, ts_s, expected_occupancy(seed, device_id, ts_s))


def co2(seed: int, device_id: Ints, ts_s: Ints) -> F64:
    ts = np.asarray(ts_s, dtype=np.int64)
    return _co2(seed, device_id, ts, expected_occupancy(seed, device_id, ts - _LAG_CO2))


def temperature(seed: int, device_id: Ints, ts_s: Ints) -> F64:
    ts = np.asarray(ts_s, dtype=np.int64)
    return _temperature(seed, device_id, ts, _trend(seed, device_id, ts))


def humidity(seed: int, device_id: Ints, ts_s: Ints) -> F64:
    ts = np.asarray(ts_s, dtype=np.int64)
    occ = expected_occupancy(seed, device_id, ts - _LAG_HUMIDITY)
    return _humidity(seed, device_id, ts, _trend(seed, device_id, ts), occ)


# The metric formulas, given the expected occupancy (and temperature trend) they depend on, so
# clean_grid can compute those shared parts once. Each keeps the exact operation order.
def _occupancy(seed: int, device_id: Ints, ts_s: Ints, lam: F64) -> F64:
    # Poisson-like spread (sd ~ sqrt(mean)) that moves over minutes, not every tick.
    fast = smooth_noise(seed, Stream.SMOOTH_OCCUPANCY_FAST, device_id, ts_s, 600)
    x = lam + 0.8 * np.sqrt(lam) * fast + 0.3 * _white(seed, 4, device_id, ts_s)
    return np.maximum(x, 0.0)


def _co2(seed: int, device_id: Ints, ts: npt.NDArray[np.int64], occ: F64) -> F64:
    return (
        460.0
        + 12.0 * _device_normal(seed, Stream.OFFSET_CO2, device_id)
        + 22.0 * occ
        + 15.0 * smooth_noise(seed, Stream.SMOOTH_CO2, device_id, ts, HOUR_S)
        + 6.0 * _white(seed, 1, device_id, ts)
    )


def _trend(seed: int, device_id: Ints, ts: npt.NDArray[np.int64]) -> F64:
    occ = expected_occupancy(seed, device_id, ts - _LAG_TEMPERATURE)
    return _temperature_trend(seed, device_id, ts, occ)


def _temperature_trend(seed: int, device_id: Ints, ts: npt.NDArray[np.int64], occ: F64) -> F64:
    outdoor = 0.9 * np.sin(2.0 * np.pi * (_hour(ts) - 9.0) / 24.0)  # warmest mid-afternoon
    return (
        20.6
        + 0.4 * _device_normal(seed, Stream.OFFSET_TEMPERATURE, device_id)
        + outdoor
        - 0.8 * (1.0 - _hvac_on(ts))  # setback at night and on weekends
        + 0.2 * occ
        + 0.3 * smooth_noise(seed, Stream.SMOOTH_TEMPERATURE, device_id, ts, 2 * HOUR_S)
    )


def _temperature(seed: int, device_id: Ints, ts: npt.NDArray[np.int64], trend: F64) -> F64:
    return trend + 0.05 * _white(seed, 2, device_id, ts)


def _humidity(
    seed: int, device_id: Ints, ts: npt.NDArray[np.int64], trend: F64, occ: F64
) -> F64:
    return (
        42.0
        + 2.5 * _device_normal(seed, Stream.OFFSET_HUMIDITY, device_id)
        + 1.6 * (trend - 21.5)
        + 0.35 * occ
        + 2.0 * smooth_noise(seed, Stream.SMOOTH_HUMIDITY, device_id, ts, 3 * HOUR_S)
        + 0.3 * _white(seed, 3, device_id, ts)
    )


_BY_METRIC = {1: co2, 2: temperature, 3: humidity, 4: occupancy}


def clean_values(seed: int, metric_id: int, device_id: Ints, ts_s: Ints) -> F64:
    """Unrounded normal value of one metric; device_id and ts_s broadcast against each other."""
    return _BY_METRIC[metric_id](seed, device_id, ts_s)


def clean_grid(
    seed: int, device_id: npt.NDArray[np.int64], ts_s: npt.NDArray[np.int64], step_s: int
) -> F64:
    """clean_values of metrics 1..4 on a (devices, metrics, times) grid, bit for bit.

    ts_s is evenly spaced by step_s. Calling clean_values per metric evaluates the expected
    occupancy four times and the temperature trend twice; here each is computed once.
    """
    dev, ts = device_id[:, None], ts_s[None, :]
    occ = _lagged_occupancy(seed, dev, ts_s, step_s)
    trend = _temperature_trend(seed, dev, ts, occ[_LAG_TEMPERATURE])
    out = np.empty((len(device_id), 4, len(ts_s)))
    out[:, 0] = _co2(seed, dev, ts, occ[_LAG_CO2])
    out[:, 1] = _temperature(seed, dev, ts, trend)
    out[:, 2] = _humidity(seed, dev, ts, trend, occ[_LAG_HUMIDITY])
    out[:, 3] = _occupancy(seed, dev, ts, occ[0])
    return out


def _lagged_occupancy(
    seed: int, dev: npt.NDArray[np.int64], ts_s: npt.NDArray[np.int64], step_s: int
) -> dict[int, F64]:
    """expected_occupancy at ts - lag for every lag in _LAGS, as (devices, times) arrays.

    When the lags are whole steps, they are windows of one evaluation on a grid widened by the
    largest lag (the values are elementwise, so a window equals a separate evaluation).
    """
    if not len(ts_s) or any(lag % step_s for lag in _LAGS):
        return {lag: expected_occupancy(seed, dev, (ts_s - lag)[None, :]) for lag in _LAGS}
    back = max(_LAGS) // step_s
    wide = ts_s[0] + step_s * np.arange(-back, len(ts_s), dtype=np.int64)
    occ = expected_occupancy(seed, dev, wide[None, :])
    return {lag: occ[:, back - lag // step_s :][:, : len(ts_s)] for lag in _LAGS}
