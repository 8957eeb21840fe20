"""simulate(config, start, end): the readings, labels and faults that *arrive* in [start, end).

Everything is computed on the fixed grid ts = installed_at + k x interval with counter-based
randomness (simulator.rng), so the batch for a range never depends on how the range was cut:
simulate(a, c) == simulate(a, b) + simulate(b, c), row for row after the sort. A window computes
the grid from start - MAX_LATENESS (to catch rows still in flight) and anomaly events from a
further MAX_DURATION back (to catch ones still running), then keeps what arrives inside it.

An ordinary reading arrives at ts + a jitter of whole milliseconds in [0, min(2 s, interval/2)),
a pure function of the reading (see faults.jitter_ns); faults move arrivals further.

Rows are ordered by (arrival_ts, device_id, metric_id, ts, value). Since a jitter is below half
an interval, ordinary readings of one tick all arrive before those of the next, so they are
sorted tick by tick on a small integer key; the few faulted rows are sorted on their own and
merged in (argsorting every row by arrival was ~20% of the run time).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from simulator.anomalies import (
    ANOMALY_TYPES,
    MAX_DURATION_S,
    Events,
    apply_events,
    generate_events,
    labels_frame,
)
from simulator.faults import (
    DUPLICATE,
    JITTER_BITS,
    MAX_LATENESS_NS,
    FaultedRows,
    classify,
    fault_rows,
    fault_threshold,
    faults_frame,
    jitter_ms_table,
    jitter_ns,
    reading_hash,
)
from simulator.fleet import FleetConfig
from simulator.metrics import METRICS
from simulator.rng import U64
from simulator.signals import HOUR_S, RESOLUTION, clean_grid

_NS = 1_000_000_000
_MS = 1_000_000
# Grid cells per block of ticks: bounds memory (~10 arrays of this many 8-byte cells) for big
# fleets or long ranges; results do not depend on it.
BLOCK_CELLS = 1 << 22
# Readings hashed per step of _hash_grid: what fits the CPU cache with its temporaries.
HASH_CHUNK = 1 << 15
_METRIC_IDS = np.array([m.metric_id for m in METRICS], dtype=np.int64)  # clean_grid's order
_N_MET = len(METRICS)
_HARD_MIN = np.array([m.hard_min for m in METRICS])
_HARD_MAX = np.array([m.hard_max for m in METRICS])
_UTC_NS = pd.DatetimeTZDtype(unit="ns", tz=UTC)


@dataclass(frozen=True)
class SimulatedBatch:
    """readings: device_id int32, metric_id int16, ts, value float64, arrival_ts (UTC ns);
    labels: label_id, device_id int32, metrics list[str], anomaly_type, start_ts, end_ts, magnitude;
    faults: fault_id, fault_type, device_id int32, metric_id int16, ts, arrival_ts, detail."""

    readings: pd.DataFrame
    labels: pd.DataFrame
    faults: pd.DataFrame


@dataclass(frozen=True)
class _Rows:
    device_id: npt.NDArray[np.int32]
    metric_id: npt.NDArray[np.int16]
    ts_ns: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    arrival_ns: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Grid:
    """One block of ticks. A "cell" is a (device, metric) pair, numbered device-major; a
    reading's "slot" is tick x n_cell + cell, the order rows are emitted in (tick-major).

    values and dropped are (ticks, cells), so a slot indexes them flat.
    """

    devices: npt.NDArray[np.int64]
    ts_s: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    dropped: npt.NDArray[np.bool_]

    @property
    def n_tick(self) -> int:
        return len(self.ts_s)

    @property
    def n_cell(self) -> int:
        return len(self.devices) * _N_MET

    def cell_device(self) -> npt.NDArray[np.int32]:
        """device_id of each cell (a lookup table: int64 division is slow in numpy)."""
        return np.repeat(self.devices, _N_MET).astype(np.int32)

    def cell_metric(self) -> npt.NDArray[np.int16]:
        return np.tile(_METRIC_IDS, len(self.devices)).astype(np.int16)


@dataclass(frozen=True)
class _Hashed:
    """What the reading hashes of a grid decide: its faulted readings (slot and hash), and
    the unsorted keys jitter_ms << bits | cell of ticks [t_lo, t_lo + len(keys))."""

    fault_slot: npt.NDArray[np.int64]
    fault_hash: U64
    keys: npt.NDArray[np.signedinteger]
    bits: int
    sentinel: int  # above every key: marks readings left out, sorting them last
    t_lo: int


def _to_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    return int(pd.Timestamp(moment).value)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def simulate(config: FleetConfig, start: datetime, end: datetime) -> SimulatedBatch:
    """Readings whose arrival_ts is in [start, end), anomalies starting in it, and its faults."""
    start_ns, end_ns = _to_ns(start), _to_ns(end)
    if start_ns > end_ns:
        raise ValueError("start must not be after end")
    iv = config.interval_seconds
    epoch_ns = _to_ns(config.installed_at)
    k_lo = max(0, _ceil_div(start_ns - MAX_LATENESS_NS - epoch_ns, iv * _NS))
    k_hi = max(k_lo, _ceil_div(end_ns - epoch_ns, iv * _NS))
    # Hour buckets whose events may still run at tick k_lo, up to those that start by `end`.
    bucket_lo = (k_lo * iv - MAX_DURATION_S - iv) // HOUR_S - 1
    bucket_hi = (end_ns - epoch_ns) // (HOUR_S * _NS) + 1

    devices = np.arange(1, config.n_devices + 1, dtype=np.int64)
    events = _events(config, devices, bucket_lo, bucket_hi)
    labels = _labels_frame(
        events,
        seed=config.seed,
        epoch_ns=epoch_ns,
        interval_ns=iv * _NS,
        start_ns=start_ns,
        end_ns=end_ns,
    )
    # Blocks of whole ticks, so each block's ordinary rows arrive after the previous block's.
    per_block = max(1, BLOCK_CELLS // (_N_MET * config.n_devices))
    blocks = [
        _block(config, devices, k, min(k + per_block, k_hi), events, start_ns, end_ns)
        for k in range(k_lo, k_hi, per_block)
    ]
    faulted = _concat_faulted([f for _, f in blocks])
    return SimulatedBatch(
        readings=_readings_frame([r for r, _ in blocks], faulted),
        labels=labels,
        faults=_faults_frame(faulted, config.seed),
    )


def simulate_clean(config: FleetConfig, start: datetime, end: datetime) -> SimulatedBatch:
    """simulate() with anomalies and faults off: the signal the labels are measured against."""
    return simulate(config.clean(), start, end)


def _events(
    config: FleetConfig, devices: npt.NDArray[np.int64], bucket_lo: int, bucket_hi: int
) -> Events:
    """Events of all devices, drawn in chunks of devices (one draw per device, bucket and type
    is a cell) to bound memory; events are per device, so the chunks just concatenate."""
    n_buckets = max(bucket_hi - max(bucket_lo, 0) + 1, 1)
    per_chunk = max(1, BLOCK_CELLS // (n_buckets * len(ANOMALY_TYPES)))
    parts = [
        generate_events(
            config.seed,
            config.anomalies,
            devices[i : i + per_chunk],
            config.interval_seconds,
            bucket_lo,
            bucket_hi,
        )
        for i in range(0, len(devices), per_chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return Events(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Events)))


def _block(
    config: FleetConfig,
    devices: npt.NDArray[np.int64],
    k_lo: int,
    k_hi: int,
    events: Events,
    start_ns: int,
    end_ns: int,
) -> tuple[_Rows, FaultedRows]:
    """Ticks [k_lo, k_hi): ordinary rows arriving in the window, in arrival order, and the
    faulted readings whose emitted row arrives in it."""
    iv = config.interval_seconds
    ts_s = _to_ns(config.installed_at) // _NS + np.arange(k_lo, k_hi, dtype=np.int64) * iv
    grid = _Grid(devices, ts_s, *_values(config, devices, ts_s, k_lo, events))
    jitter_ms = jitter_ms_table(iv)
    # Ordinary rows arrive in [ts, ts + the largest jitter]: only these ticks can reach the window.
    t_lo = int(np.searchsorted(ts_s * _NS + int(jitter_ms[-1]) * _MS, start_ns))
    t_hi = int(np.searchsorted(ts_s * _NS, end_ns))
    hashed = _hash_grid(config, grid, jitter_ms, t_lo, t_hi)

    faulted, replaced = _faulted(config, grid, hashed)
    excluded = np.concatenate([_dropped_slots(grid), replaced])
    regular = _regular(grid, hashed, excluded, start_ns, end_ns)
    in_window = (faulted.arrival_ns >= start_ns) & (faulted.arrival_ns < end_ns)
    return regular, _select(faulted, in_window)


def _values(
    config: FleetConfig,
    devices: npt.NDArray[np.int64],
    ts_s: npt.NDArray[np.int64],
    k_lo: int,
    events: Events,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Reported values and dropout marks, (ticks, cells): signal, anomalies, hard limits and
    resolution. Computed (devices, metrics, ticks), as clean_grid fills them, and transposed
    while rounding: rows are then gathered tick by tick, within one short row each."""
    values = clean_grid(config.seed, devices, ts_s, config.interval_seconds)
    dropped = np.zeros(values.shape, dtype=bool)
    apply_events(
        values,
        dropped,
        events,
        seed=config.seed,
        device_lo=int(devices[0]),
        tick_lo=k_lo,
        epoch_s=_to_ns(config.installed_at) // _NS,
        interval_s=config.interval_seconds,
    )
    np.clip(values, _HARD_MIN[:, None], _HARD_MAX[:, None], out=values)
    by_tick = np.empty((len(ts_s), len(devices), _N_MET))
    for i, metric_id in enumerate(_METRIC_IDS):
        by_tick[:, :, i] = np.round(values[:, i, :], RESOLUTION[int(metric_id)]).T
    return by_tick.reshape(len(ts_s), -1), dropped.transpose(2, 0, 1).reshape(len(ts_s), -1)


def _dropped_slots(grid: _Grid) -> npt.NDArray[np.int64]:
    """Slots of the readings dropouts removed."""
    return np.flatnonzero(grid.dropped)


def _hash_grid(
    config: FleetConfig, grid: _Grid, jitter_ms: npt.NDArray[np.int64], t_lo: int, t_hi: int
) -> _Hashed:
    """Every reading's hash, used chunk by chunk of ticks while it is in the CPU cache (a
    whole grid of hashes is ~9 MB per million readings, streamed once per use otherwise)."""
    n_cell = grid.n_cell
    bits = max(1, (n_cell - 1).bit_length())
    sentinel = (int(jitter_ms[-1]) + 1) << bits
    dtype = np.int32 if sentinel < 2**31 else np.int64  # small keys sort faster
    key_of_jitter = (jitter_ms << bits).astype(dtype)
    cells = np.arange(n_cell, dtype=dtype)
    keys = np.empty((max(t_hi - t_lo, 0), n_cell), dtype=dtype)
    threshold = fault_threshold(config.faults)
    devices, metrics = grid.devices[None, :, None], _METRIC_IDS[None, None, :]
    slots, hashes = [], []
    per_chunk = max(1, HASH_CHUNK // n_cell)
    for first in range(0, grid.n_tick, per_chunk):
        ts_s = grid.ts_s[first : first + per_chunk, None, None]
        h = reading_hash(config.seed, devices, metrics, ts_s).reshape(-1, n_cell)
        at = np.flatnonzero(h < threshold)
        slots.append(at + first * n_cell)
        hashes.append(h.reshape(-1)[at])
        lo, hi = max(first, t_lo), min(first + len(h), t_hi)
        if lo < hi:
            jitter = (h[lo - first : hi - first] & np.uint64(JITTER_BITS)).astype(np.intp)
            np.add(key_of_jitter[jitter], cells, out=keys[lo - t_lo : hi - t_lo])
    return _Hashed(np.concatenate(slots), np.concatenate(hashes), keys, bits, sentinel, t_lo)


def _faulted(
    config: FleetConfig, grid: _Grid, hashed: _Hashed
) -> tuple[FaultedRows, npt.NDArray[np.int64]]:
    """What the faulted, not dropped, readings emit; and the slots of those whose own row the
    fault replaces (every fault but duplicate, which adds a copy)."""
    kept = ~grid.dropped.reshape(-1)[hashed.fault_slot]
    slot, h = hashed.fault_slot[kept], hashed.fault_hash[kept]
    tick, cell = np.divmod(slot, grid.n_cell)
    ts = grid.ts_s[tick] * _NS
    rows = fault_rows(
        config.seed,
        classify(h, config.faults),
        grid.devices[cell // _N_MET],
        _METRIC_IDS[cell % _N_MET],
        ts,
        grid.values.reshape(-1)[slot],
        ts + jitter_ns(h, config.interval_seconds),
    )
    return rows, slot[rows.code != DUPLICATE]


def _regular(
    grid: _Grid, hashed: _Hashed, excluded: npt.NDArray[np.int64], start_ns: int, end_ns: int
) -> _Rows:
    """Readings emitted as generated (not dropped, not replaced by a fault) that arrive in
    [start_ns, end_ns), in (arrival, device, metric) order: the order of the full sort, as these
    rows never tie on all three."""
    n_cell, bits, t_lo = grid.n_cell, hashed.bits, hashed.t_lo
    n = len(hashed.keys)
    excluded = excluded[(excluded >= t_lo * n_cell) & (excluded < (t_lo + n) * n_cell)]
    excluded -= t_lo * n_cell
    key = _regular_keys(hashed.keys, excluded, hashed.sentinel)
    n_kept = n_cell - np.bincount(excluded // n_cell, minlength=n)
    slot = np.repeat(np.arange(t_lo * n_cell, (t_lo + n) * n_cell, n_cell), n_kept)
    ts = np.repeat(grid.ts_s[t_lo : t_lo + n] * _NS, n_kept)
    arrival = (key >> bits).astype(np.int64)
    arrival *= _MS
    arrival += ts
    lo, hi = np.searchsorted(arrival, [start_ns, end_ns])
    slot, ts, arrival = slot[lo:hi], ts[lo:hi], arrival[lo:hi]
    cell = (key[lo:hi] & ((1 << bits) - 1)).astype(np.intp)
    slot += cell
    return _Rows(
        grid.cell_device()[cell],
        grid.cell_metric()[cell],
        ts,
        grid.values.reshape(-1)[slot],
        arrival,
    )


def _regular_keys(
    keys: npt.NDArray[np.signedinteger], excluded: npt.NDArray[np.int64], sentinel: int
) -> npt.NDArray[np.signedinteger]:
    """The keys (ticks, cells) sorted within each tick and flattened, ticks in order, less the
    excluded slots (numbered from the first row)."""
    keys.reshape(-1)[excluded] = sentinel
    keys.sort(axis=1)
    flat = keys.reshape(-1)
    return flat[flat != sentinel]


def _select(
    rows: FaultedRows, which: npt.NDArray[np.bool_] | npt.NDArray[np.intp]
) -> FaultedRows:
    return FaultedRows(*(getattr(rows, f.name)[which] for f in fields(FaultedRows)))


def _concat_faulted(parts: list[FaultedRows]) -> FaultedRows:
    if not parts:
        return _no_faults()
    return FaultedRows(
        *(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FaultedRows))
    )


def _no_faults() -> FaultedRows:
    empty = np.array([], dtype=np.int64)
    return FaultedRows(
        empty.astype(np.int8), empty, empty, empty, empty, empty, empty.astype(float), empty
    )


def _emitted(faulted: FaultedRows) -> _Rows:
    """The rows faulted readings emit, sorted by (arrival, device, metric, ts, value)."""
    rows = _Rows(
        faulted.emit_device_id.astype(np.int32),
        faulted.metric_id.astype(np.int16),
        faulted.emit_ts_ns,
        faulted.emit_value,
        faulted.arrival_ns,
    )
    # Rows equal on all five keys are identical rows, so the sort needs no tie-break.
    order = np.lexsort((rows.value, rows.ts_ns, rows.metric_id, rows.device_id, rows.arrival_ns))
    return _take(rows, order)


def _take(rows: _Rows, index: npt.NDArray[np.int64]) -> _Rows:
    return _Rows(*(getattr(rows, f.name)[index] for f in fields(_Rows)))


def _concat_rows(parts: list[_Rows]) -> _Rows:
    if len(parts) == 1:
        return parts[0]
    empty = _Rows(
        np.array([], dtype=np.int32),
        np.array([], dtype=np.int16),
        np.array([], dtype=np.int64),
        np.array([], dtype=np.float64),
        np.array([], dtype=np.int64),
    )
    return _Rows(
        *(np.concatenate([getattr(p, f.name) for p in [empty, *parts]]) for f in fields(_Rows))
    )


def _insert_positions(regular: _Rows, emitted: _Rows) -> npt.NDArray[np.int64]:
    """How many (sorted) regular rows precede each (sorted) emitted row in the merged order.

    Regular rows with the same arrival are compared key by key; a regular and an emitted row
    never tie on every key (see _emitted), so "precede" is strict.
    """
    arrival = regular.arrival_ns
    lo = np.searchsorted(arrival, emitted.arrival_ns, side="left")
    span = np.searchsorted(arrival, emitted.arrival_ns, side="right") - lo
    tied = np.flatnonzero(span)
    if tied.size:
        which = np.repeat(tied, span[tied])
        first = np.repeat(lo[tied] - np.cumsum(span[tied]) + span[tied], span[tied])
        at = first + np.arange(len(which))
        before = _lex_less(_take(regular, at), _take(emitted, which))
        np.add.at(lo, which[before], 1)
    return lo


def _lex_less(a: _Rows, b: _Rows) -> npt.NDArray[np.bool_]:
    """a < b on (device, metric, ts, value), value ordered as np.lexsort does (NaN last)."""
    less = (a.value < b.value) | (np.isnan(b.value) & ~np.isnan(a.value))
    for x, y in ((a.ts_ns, b.ts_ns), (a.metric_id, b.metric_id), (a.device_id, b.device_id)):
        less = (x < y) | ((x == y) & less)
    return less


def _merge(regular: _Rows, emitted: _Rows, before: npt.NDArray[np.int64]) -> _Rows:
    """regular with each emitted row inserted after `before` of them (emitted rows in order)."""
    if not len(before):
        return regular
    columns = (f.name for f in fields(_Rows))
    return _Rows(*(np.insert(getattr(regular, c), before, getattr(emitted, c)) for c in columns))


def _readings_frame(blocks: list[_Rows], faulted: FaultedRows) -> pd.DataFrame:
    regular = _concat_rows(blocks)  # blocks are consecutive ticks: already in order
    emitted = _emitted(faulted)
    rows = _merge(regular, emitted, _insert_positions(regular, emitted))
    # The columns are fresh arrays nobody else holds, so the frame can own them (copy=False);
    # epoch ns given with a UTC dtype are taken as they are, where to_datetime(utc=True) parses
    # and copies them. Building the frame took ~17 ms per million rows, now ~0.1 ms.
    return pd.DataFrame(
        {
            "device_id": rows.device_id,
            "metric_id": rows.metric_id,
            "ts": pd.DatetimeIndex(rows.ts_ns, dtype=_UTC_NS, copy=False),
            "value": rows.value,
            "arrival_ts": pd.DatetimeIndex(rows.arrival_ns, dtype=_UTC_NS, copy=False),
        },
        copy=False,
    )


def _labels_frame(
    events: Events, *, seed: int, epoch_ns: int, interval_ns: int, start_ns: int, end_ns: int
) -> pd.DataFrame:
    """labels_frame sorted by (start_ts, device_id, label_id); as for faults, the events are
    put in order first and pandas sorts only when label_id has to break a tie."""
    order = np.lexsort((events.device_id, events.start_tick))
    ordered = Events(*(getattr(events, f.name)[order] for f in fields(Events)))
    frame = labels_frame(
        ordered,
        seed=seed,
        epoch_ns=epoch_ns,
        interval_ns=interval_ns,
        start_ns=start_ns,
        end_ns=end_ns,
    )
    tick, device = ordered.start_tick, ordered.device_id  # a superset of the labels' keys
    if np.any((tick[1:] == tick[:-1]) & (device[1:] == device[:-1])):
        return _sorted(frame, ["start_ts", "device_id", "label_id"])
    return frame


def _faults_frame(faulted: FaultedRows, seed: int) -> pd.DataFrame:
    """faults_frame sorted by (arrival_ts, device_id, metric_id, ts, fault_id).

    Sorting the arrays before building the frame skips a pandas sort on strings; only when two
    faults tie on the four numbers does fault_id decide, and then pandas sorts as before.
    """
    keys = (faulted.emit_ts_ns, faulted.metric_id, faulted.emit_device_id, faulted.arrival_ns)
    order = np.lexsort(keys)
    ordered = [k[order] for k in keys]
    if not np.any(np.logical_and.reduce([k[1:] == k[:-1] for k in ordered])):
        return faults_frame(_select(faulted, order), seed)
    by = ["arrival_ts", "device_id", "metric_id", "ts", "fault_id"]
    return _sorted(faults_frame(faulted, seed), by)


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by, kind="stable").reset_index(drop=True)
