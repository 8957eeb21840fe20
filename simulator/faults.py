"""Data faults: what the transport and the devices get wrong, labeled apart from anomalies.

Each reading draws one hash of (seed, device, metric, ts); its top bits pick at most one fault by
the configured rates, its low bits give the reading's network jitter. A fault changes the row that
is emitted (or, for duplicate, emits a second copy); the fault record describes that row.

  duplicate         the same row delivered again 1-120 s after the first; the copy is the fault
  late              arrives 10-100 min after its ts
  out_of_order      arrives 30-300 s after its ts, i.e. after newer readings of the device
  null              value missing (NaN)
  impossible        outside the metric's hard limits (negative co2 or occupancy, humidity > 100,
                    temperature > 85)
  unknown_device    device_id replaced by one in [900000, 1000000), never in a fleet
  future_timestamp  ts set 1-48 h after the row's arrival (device clock ahead)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.metrics import METRICS
from simulator.rng import U64, Stream, hash64, uniform

FAULT_TYPES: tuple[str, ...] = (
    "duplicate",
    "late",
    "out_of_order",
    "null",
    "impossible",
    "unknown_device",
    "future_timestamp",
)
NO_FAULT = len(FAULT_TYPES)
_CODE = {name: code for code, name in enumerate(FAULT_TYPES)}
DUPLICATE = _CODE["duplicate"]  # the one fault that emits a second row instead of changing one
UNKNOWN_DEVICE_BASE = 900_000
_MS = 1_000_000  # ns per ms
# Latest arrival after ts of any row (late: < 100 min); windows look back this far for stragglers.
MAX_LATENESS_NS = 6_000_000 * _MS


class FaultConfig(BaseModel):
    """Probability per reading of each fault; defaults total 0.36% of readings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duplicate: float = Field(0.0008, ge=0, le=0.1)
    late: float = Field(0.0008, ge=0, le=0.1)
    out_of_order: float = Field(0.0008, ge=0, le=0.1)
    null: float = Field(0.0005, ge=0, le=0.1)
    impossible: float = Field(0.0003, ge=0, le=0.1)
    unknown_device: float = Field(0.0002, ge=0, le=0.1)
    future_timestamp: float = Field(0.0002, ge=0, le=0.1)

    @model_validator(mode="after")
    def _total_below_half(self) -> FaultConfig:
        if sum(self.rates()) > 0.5:
            raise ValueError("fault rates must total at most 0.5 of readings")
        return self

    def rates(self) -> tuple[float, ...]:
        return tuple(getattr(self, name) for name in FAULT_TYPES)

    @classmethod
    def disabled(cls) -> FaultConfig:
        return cls(**dict.fromkeys(FAULT_TYPES, 0.0))


def reading_hash(
    seed: int, device_id: npt.ArrayLike, metric_id: npt.ArrayLike, ts_s: npt.ArrayLike
) -> U64:
    return hash64(seed, Stream.READING, device_id, metric_id, ts_s)


def _edges(config: FaultConfig) -> npt.NDArray[np.float64]:
    return np.cumsum(config.rates())


def classify(h: U64, config: FaultConfig) -> npt.NDArray[np.int8]:
    """Fault code per reading (NO_FAULT for most)."""
    return np.searchsorted(_edges(config), uniform(h), side="right").astype(np.int8)


def fault_threshold(config: FaultConfig) -> np.uint64:
    """classify(h) != NO_FAULT exactly when h < this: one integer compare per reading instead of
    a float conversion and a search, so the few faulted readings can be picked out first.

    uniform(h) = (h >> 11) / 2^53 < total  <=>  h >> 11 < ceil(total x 2^53)  (h >> 11 is whole
    and the scaling by 2^53 is exact)  <=>  h < ceil(total x 2^53) x 2^11.
    """
    return np.uint64(math.ceil(float(_edges(config)[-1]) * 2.0**53) << 11)


JITTER_BITS = 0x7FF  # the hash bits a reading's jitter comes from


def jitter_ms_table(interval_s: int) -> npt.NDArray[np.int64]:
    """Jitter in whole ms for each value of the hash's low 11 bits (see jitter_ns)."""
    max_ms = min(2000, interval_s * 500)
    return np.arange(JITTER_BITS + 1, dtype=np.int64) * max_ms // 2048


def jitter_ns(h: U64, interval_s: int) -> npt.NDArray[np.int64]:
    """Network delay of an ordinary reading: whole ms in [0, min(2 s, interval / 2)).

    Taken from the hash's low 11 bits, which the fault draw (top 53 bits) does not use.
    """
    return jitter_ms_table(interval_s)[h & np.uint64(JITTER_BITS)] * _MS


@dataclass(frozen=True)
class FaultedRows:
    """Faulted readings of a block: original keys and what is emitted instead."""

    code: npt.NDArray[np.int8]
    device_id: npt.NDArray[np.int64]  # original
    metric_id: npt.NDArray[np.int64]
    ts_ns: npt.NDArray[np.int64]  # original
    emit_device_id: npt.NDArray[np.int64]
    emit_ts_ns: npt.NDArray[np.int64]
    emit_value: npt.NDArray[np.float64]
    arrival_ns: npt.NDArray[np.int64]  # of the emitted row (for duplicate: of the copy)


def fault_rows(
    seed: int,
    code: npt.NDArray[np.int8],
    device_id: npt.NDArray[np.int64],
    metric_id: npt.NDArray[np.int64],
    ts_ns: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    arrival_ns: npt.NDArray[np.int64],
) -> FaultedRows:
    """What each faulted reading emits; arrival_ns is the reading's ordinary arrival."""
    u = uniform(hash64(seed, Stream.FAULT_PARAM, device_id, metric_id, ts_ns // 1_000_000_000))

    def ms(lo: int, span: int) -> npt.NDArray[np.int64]:
        """A delay of lo + u x span milliseconds, in ns."""
        return (lo + np.floor(u * span).astype(np.int64)) * _MS

    is_ = {name: code == c for name, c in _CODE.items()}

    arrival = arrival_ns.copy()
    arrival[is_["duplicate"]] += ms(1_000, 119_000)[is_["duplicate"]]
    arrival[is_["late"]] = (ts_ns + ms(600_000, 5_400_000))[is_["late"]]
    arrival[is_["out_of_order"]] = (ts_ns + ms(30_000, 270_000))[is_["out_of_order"]]

    emit_ts = ts_ns.copy()
    fut = is_["future_timestamp"]
    emit_ts[fut] = (arrival_ns + ms(3_600_001, 47 * 3_600_000))[fut]

    emit_dev = device_id.copy()
    unk = is_["unknown_device"]
    emit_dev[unk] = UNKNOWN_DEVICE_BASE + np.floor(u[unk] * 100_000).astype(np.int64)

    emit_value = value.copy()
    emit_value[is_["null"]] = np.nan
    imp = is_["impossible"]
    # Glitches a real sensor produces: negative counts and concentrations, humidity over 100 %,
    # overflowing temperature registers.
    glitch = np.select(
        [metric_id == 1, metric_id == 2, metric_id == 3],
        [-1.0 - np.floor(u * 500), 100.0 + np.round(u * 227.67, 2), 100.1 + np.round(u * 50, 1)],
        -1.0 - np.floor(u * 20),
    )
    emit_value[imp] = glitch[imp]
    return FaultedRows(code, device_id, metric_id, ts_ns, emit_dev, emit_ts, emit_value, arrival)


def _detail(
    code: int,
    dev: int,
    sent_as: int,
    metric_id: int,
    ts_ns: int,
    emit_ts_ns: int,
    value: float,
    arrival_ns: int,
) -> str:
    name, spec = FAULT_TYPES[code], METRICS[metric_id - 1]
    if name == "duplicate":
        return f"second copy, delivered {(arrival_ns - ts_ns) / 1e9:.1f} s after its ts"
    if name == "late":
        return f"delivered {(arrival_ns - ts_ns) / 6e10:.1f} min after its ts"
    if name == "out_of_order":
        return f"delivered {(arrival_ns - ts_ns) / 1e9:.1f} s after its ts, after newer readings"
    if name == "null":
        return f"{spec.metric} value missing (null)"
    if name == "impossible":
        return (
            f"{spec.metric} = {value:g} {spec.unit} is outside the physical range "
            f"[{spec.hard_min:g}, {spec.hard_max:g}]"
        )
    if name == "unknown_device":
        return f"device_id {sent_as} is not in the fleet (the reading came from device {dev})"
    return f"ts is {(emit_ts_ns - arrival_ns) / 3.6e12:.2f} h after arrival (device clock ahead)"


def faults_frame(rows: FaultedRows, seed: int) -> pd.DataFrame:
    """One record per emitted faulted row; ids name the original reading, so they are stable."""
    names = np.array(FAULT_TYPES, dtype=object)[rows.code]
    # Formatting is per row; iterate Python scalars (tolist): formatting numpy scalars took
    # ~2.5x as long. The strings are the same.
    dev, metric = rows.device_id.tolist(), rows.metric_id.tolist()
    ids = [
        f"s{seed}-d{d}-m{m}-t{t}-{n}"
        for d, m, t, n in zip(
            dev, metric, (rows.ts_ns // 1_000_000_000).tolist(), names.tolist(), strict=True
        )
    ]
    details = list(
        map(
            _detail,
            rows.code.tolist(),
            dev,
            rows.emit_device_id.tolist(),
            metric,
            rows.ts_ns.tolist(),
            rows.emit_ts_ns.tolist(),
            rows.emit_value.tolist(),
            rows.arrival_ns.tolist(),
        )
    )
    return pd.DataFrame(
        {
            "fault_id": pd.Series(ids, dtype=object),
            "fault_type": pd.Series(names, dtype=object),
            "device_id": rows.emit_device_id.astype(np.int32),
            "metric_id": rows.metric_id.astype(np.int16),
            "ts": pd.to_datetime(rows.emit_ts_ns, unit="ns", utc=True),
            "arrival_ts": pd.to_datetime(rows.arrival_ns, unit="ns", utc=True),
            "detail": pd.Series(details, dtype=object),
        }
    )
