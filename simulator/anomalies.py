"""Labeled anomalies: when they happen (a pure function of device and hour) and what they do.

Each (device, hour bucket since the fleet epoch, anomaly type) draws one uniform; the event
happens when it is below rate/24. Start, duration, magnitude and metric come from further hashes
of the same key, so an event exists independently of any window that sees it. Events last at
most MAX_DURATION_S, which bounds how far back a window must look for ones still running.

Magnitude is in widths of the metric's normal band (co2: 400 ppm, temperature: 8 degC, humidity:
30 pct, occupancy: 20 people) and is drawn per event in [1, 1.5] x the configured magnitude.
Effects, applied in this order on top of the clean signal, before hard-limit clipping and the
sensor's rounding:
  level_shift          + magnitude x width for the whole event
  drift                ramps linearly from ~0 to + magnitude x width, then ends (recalibration)
  ventilation_failure  co2, temperature and humidity each rise towards + magnitude x width with a
                       time constant of a third of the event; occupancy is untouched
  spike                + magnitude x width, a few ticks
  noise_burst          + magnitude x width x N(0, 1) per tick
  threshold_breach     max(value, breach threshold) + magnitude x width (metrics with a threshold)
  stuck                the clean value at the event's first tick, repeated (magnitude 0)
  dropout              every metric of the device missing: no rows at all (magnitude 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.metrics import METRIC_NAMES, METRICS
from simulator.rng import Stream, hash64, normal, uniform
from simulator.signals import HOUR_S, clean_values

ANOMALY_TYPES: tuple[str, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "dropout",
    "noise_burst",
    "threshold_breach",
    "ventilation_failure",
)
MAX_DURATION_S = 4 * HOUR_S
_CODE = {name: code for code, name in enumerate(ANOMALY_TYPES)}
# The order effects compose in (see the module docstring); fixed so overlaps are reproducible.
_APPLY_ORDER = (
    "level_shift",
    "drift",
    "ventilation_failure",
    "spike",
    "noise_burst",
    "threshold_breach",
    "stuck",
    "dropout",
)
_WIDTH = np.array([m.width for m in METRICS])
_THRESHOLD = np.array(
    [np.nan if m.breach_threshold is None else m.breach_threshold for m in METRICS]
)
_N_METRICS = len(METRICS)


class AnomalyKind(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(ge=0, le=24, description="Events per device per day (at most 1 an hour).")
    magnitude: float = Field(ge=0, le=10, description="Size in normal-band widths.")
    min_duration_s: int = Field(ge=1, le=MAX_DURATION_S)
    max_duration_s: int = Field(ge=1, le=MAX_DURATION_S)

    @model_validator(mode="after")
    def _durations_ordered(self) -> AnomalyKind:
        if self.min_duration_s > self.max_duration_s:
            raise ValueError("min_duration_s must not exceed max_duration_s")
        return self


def _kind(rate: float, magnitude: float, lo: int, hi: int) -> AnomalyKind:
    return AnomalyKind(rate=rate, magnitude=magnitude, min_duration_s=lo, max_duration_s=hi)


class AnomalyConfig(BaseModel):
    """Rates total 2.9 events per device per day: ~130 labels for the default 45-device fleet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spike: AnomalyKind = _kind(0.8, 1.5, 10, 60)
    level_shift: AnomalyKind = _kind(0.3, 1.0, 1800, 4 * HOUR_S)
    drift: AnomalyKind = _kind(0.2, 1.0, HOUR_S, 4 * HOUR_S)
    stuck: AnomalyKind = _kind(0.3, 0.0, 900, 3 * HOUR_S)
    dropout: AnomalyKind = _kind(0.4, 0.0, 120, 2 * HOUR_S)
    noise_burst: AnomalyKind = _kind(0.3, 0.3, 300, 1800)
    threshold_breach: AnomalyKind = _kind(0.4, 0.3, 600, HOUR_S)
    ventilation_failure: AnomalyKind = _kind(0.2, 0.6, HOUR_S, 4 * HOUR_S)

    def kinds(self) -> tuple[AnomalyKind, ...]:
        return tuple(getattr(self, name) for name in ANOMALY_TYPES)

    @classmethod
    def disabled(cls) -> AnomalyConfig:
        base = cls()
        return cls(
            **{
                n: k.model_copy(update={"rate": 0.0})
                for n, k in zip(ANOMALY_TYPES, base.kinds(), strict=True)
            }
        )

    @classmethod
    def only(cls, name: str, rate: float) -> AnomalyConfig:
        """Every type off except one, at the given rate (for tests and targeted datasets)."""
        off = cls.disabled()
        return off.model_copy(update={name: getattr(cls(), name).model_copy(update={"rate": rate})})


@dataclass(frozen=True)
class Events:
    """Anomaly events of a block of devices, sorted by (device_id, bucket, type)."""

    device_id: npt.NDArray[np.int64]
    type_code: npt.NDArray[np.int64]
    bucket: npt.NDArray[np.int64]
    start_tick: npt.NDArray[np.int64]
    end_tick: npt.NDArray[np.int64]  # exclusive
    magnitude: npt.NDArray[np.float64]
    metric_mask: npt.NDArray[np.bool_]  # (events, metrics): which metrics the event touches


def generate_events(
    seed: int,
    config: AnomalyConfig,
    device_ids: npt.NDArray[np.int64],
    interval_s: int,
    bucket_lo: int,
    bucket_hi: int,
) -> Events:
    """Events of the given devices starting in hour buckets [bucket_lo, bucket_hi]."""
    kinds = config.kinds()
    buckets = np.arange(max(bucket_lo, 0), max(bucket_hi + 1, 0), dtype=np.int64)
    types = np.arange(len(kinds), dtype=np.int64)
    rate = np.array([k.rate for k in kinds]) / 24.0
    draw = uniform(
        hash64(seed, Stream.EVENT, device_ids[:, None, None], buckets[None, :, None], types)
    )
    d_i, b_i, t = np.nonzero(draw < rate)  # C order = sorted by (device, bucket, type)
    dev, bucket = device_ids[d_i], buckets[b_i]
    key = (dev, bucket, t)

    offset_s = np.floor(uniform(hash64(seed, Stream.EVENT_START, *key)) * HOUR_S).astype(np.int64)
    start_tick = -(-(bucket * HOUR_S + offset_s) // interval_s)  # first grid tick at or after
    lo = np.array([k.min_duration_s for k in kinds])[t]
    hi = np.array([k.max_duration_s for k in kinds])[t]
    dur_s = lo + np.floor(
        uniform(hash64(seed, Stream.EVENT_DURATION, *key)) * (hi - lo + 1)
    ).astype(np.int64)
    n_ticks = np.maximum(-(-dur_s // interval_s), 1)
    base = np.array([k.magnitude for k in kinds])[t]
    magnitude = base * (1.0 + 0.5 * uniform(hash64(seed, Stream.EVENT_MAGNITUDE, *key)))

    choice = uniform(hash64(seed, Stream.EVENT_METRIC, *key))
    mask = np.zeros((len(t), _N_METRICS), dtype=bool)
    rows = np.arange(len(t))
    mask[rows, np.floor(choice * _N_METRICS).astype(np.int64)] = True  # one metric, any
    breach = t == _CODE["threshold_breach"]
    with_threshold = np.flatnonzero(~np.isnan(_THRESHOLD))
    mask[breach] = False
    mask[
        rows[breach],
        with_threshold[np.floor(choice[breach] * len(with_threshold)).astype(np.int64)],
    ] = True
    mask[t == _CODE["dropout"]] = True
    mask[t == _CODE["ventilation_failure"]] = ~np.isnan(_THRESHOLD)  # co2, temperature, humidity

    return Events(dev, t, bucket, start_tick, start_tick + n_ticks, magnitude, mask)


def apply_events(
    values: npt.NDArray[np.float64],
    dropped: npt.NDArray[np.bool_],
    events: Events,
    *,
    seed: int,
    device_lo: int,
    tick_lo: int,
    epoch_s: int,
    interval_s: int,
) -> None:
    """Apply events in place to a (devices, metrics, ticks) grid starting at device_lo, tick_lo."""
    _, n_met, n_tick = values.shape
    flat_values = values.reshape(-1)  # views: the grid is C-contiguous
    flat_dropped = dropped.reshape(-1)
    ev, m = np.nonzero(events.metric_mask)  # one "effect" per (event, metric)
    s, e = events.start_tick[ev], events.end_tick[ev]
    s_in = np.maximum(s, tick_lo)
    lengths = np.maximum(np.minimum(e, tick_lo + n_tick) - s_in, 0)
    eff = np.repeat(np.arange(len(ev)), lengths)
    if eff.size == 0:
        return
    k = s_in[eff] + (np.arange(eff.size) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    stuck_at = _stuck_values(events, ev, m, s, seed=seed, epoch_s=epoch_s, interval_s=interval_s)
    ev, m, s, e = ev[eff], m[eff], s[eff], e[eff]
    dev = events.device_id[ev]
    pos = ((dev - device_lo) * n_met + m) * n_tick + (k - tick_lo)
    size = events.magnitude[ev] * _WIDTH[m]
    code = events.type_code[ev]

    for name in _APPLY_ORDER:
        sel = code == _CODE[name]
        if not sel.any():
            continue
        p = pos[sel]
        if name in ("level_shift", "spike"):
            np.add.at(flat_values, p, size[sel])
        elif name == "drift":
            np.add.at(flat_values, p, size[sel] * (k[sel] - s[sel] + 1) / (e[sel] - s[sel]))
        elif name == "ventilation_failure":
            tau = (e[sel] - s[sel]) / 3.0
            np.add.at(flat_values, p, size[sel] * (1.0 - np.exp(-(k[sel] - s[sel] + 1) / tau)))
        elif name == "noise_burst":
            ts = epoch_s + k[sel] * interval_s
            z = normal(hash64(seed, Stream.NOISE_BURST, dev[sel], m[sel] + 1, ts))
            np.add.at(flat_values, p, size[sel] * z)
        elif name == "threshold_breach":
            np.maximum.at(flat_values, p, _THRESHOLD[m[sel]])
            np.add.at(flat_values, p, size[sel])
        elif name == "stuck":
            flat_values[p] = stuck_at[eff[sel]]
        else:  # dropout
            flat_dropped[p] = True


def _stuck_values(
    events: Events,
    ev: npt.NDArray[np.int64],
    m: npt.NDArray[np.int64],
    start_tick: npt.NDArray[np.int64],
    *,
    seed: int,
    epoch_s: int,
    interval_s: int,
) -> npt.NDArray[np.float64]:
    """Per effect (event ev, metric index m): the clean value at the event's first tick, the
    one a stuck sensor repeats (NaN for other types). Computed once per effect, not per tick."""
    out = np.full(len(ev), np.nan)
    stuck = events.type_code[ev] == _CODE["stuck"]
    start_ts = epoch_s + start_tick * interval_s
    for mi in np.unique(m[stuck]):
        one = stuck & (m == mi)
        out[one] = clean_values(seed, int(mi) + 1, events.device_id[ev[one]], start_ts[one])
    return out


def labels_frame(
    events: Events, *, seed: int, epoch_ns: int, interval_ns: int, start_ns: int, end_ns: int
) -> pd.DataFrame:
    """One label per event whose start_ts lies in [start_ns, end_ns)."""
    start = epoch_ns + events.start_tick * interval_ns
    keep = (start >= start_ns) & (start < end_ns)
    names = np.array(ANOMALY_TYPES, dtype=object)[events.type_code[keep]]
    dev, bucket = events.device_id[keep], events.bucket[keep]
    metric_names = np.array(METRIC_NAMES, dtype=object)
    return pd.DataFrame(
        {
            # Seed, device and hour bucket pin the event down; the type separates same-hour events.
            "label_id": [
                f"s{seed}-d{d}-h{b}-{n}" for d, b, n in zip(dev, bucket, names, strict=True)
            ],
            "device_id": dev.astype(np.int32),
            "metrics": [list(metric_names[row]) for row in events.metric_mask[keep]],
            "anomaly_type": names,
            "start_ts": pd.to_datetime(start[keep], unit="ns", utc=True),
            "end_ts": pd.to_datetime(
                epoch_ns + events.end_tick[keep] * interval_ns, unit="ns", utc=True
            ),
            "magnitude": events.magnitude[keep].astype(np.float64),
        }
    )
