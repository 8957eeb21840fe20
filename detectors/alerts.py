"""Alert state machine over normalized detector scores (pure numpy/pandas).

A detector gives, per series (a *key*, e.g. ``(device_id, metric, kind)`` with kind "device" or
"data"), a time-ordered **normalized score**: 1.0 is the detector's alarm threshold, higher is
more anomalous, NaN is missing. This module turns scores into alert episodes with the rules
below, vectorized over points (run-length logic); the only Python loop is over episodes.

Rules (``AlertPolicy`` fields in brackets; "point" = a point whose score is not NaN):

* NaN scores are dropped before anything else: they neither extend, break nor resolve an
  alert (missing data is handled by ``max_gap`` and by "data" alerts).
* **Open.** While idle, the first point with ``score >= fire_threshold`` opens a *pending*
  episode (``opened``); ``start_ts``/``opened_at`` is that point's ts.
* **Continue.** An open episode continues through every point with
  ``score >= resolve_threshold`` (hysteresis: a dip between resolve and fire keeps it open)
  as long as consecutive points are at most ``max_gap`` apart.
* **Fire.** A pending episode becomes *firing* (``fired``) at the first point of the episode at
  which EITHER ``min_count`` is set and the episode holds ``>= min_count`` points with
  ``score >= fire_threshold`` (the opening point counts) OR ``min_duration`` is set and
  ``ts - opened_at >= min_duration`` (the score stayed ``>= resolve`` that long, by the rule
  above). With neither set it fires at the opening point.
* **Close.** An episode ends at the first point with ``score < resolve_threshold`` (``end_ts`` =
  that point's ts), or, if the next point comes more than ``max_gap`` after the episode's last
  point, at ``last point + max_gap`` (that next point is then treated as an idle point and may
  open a new episode). A firing episode ends ``resolved``; a pending one ends ``cancelled``
  (it notified nobody; no cooldown). An episode still open at the end of the data has
  ``end_ts`` NaT.
* **Cooldown.** After a resolve at ``end_ts`` (automatic or manual), points with
  ``ts < end_ts + cooldown`` are ignored: they cannot open an alert and extend nothing.
* **Escalate.** While firing, each point that raises the episode's maximum severity
  (none < low < medium < high < critical) emits ``escalated``; rises while pending are folded
  into the ``fired`` transition's severity.

``advance`` continues a persisted ``AlertState`` with the next points of the same key, so
feeding a series in one call or in any consecutive pieces gives the same transitions and final
state. Points at or before the state's ``last_ts`` were seen already and are skipped (so a
re-run batch is harmless; late points cannot rewrite history).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

SEVERITIES: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
OPEN_STATES: tuple[str, ...] = ("pending", "firing")
TRANSITION_KINDS: tuple[str, ...] = (
    "opened",
    "fired",
    "escalated",
    "acknowledged",
    "cancelled",
    "resolved",
)
EPISODE_COLUMNS: tuple[str, ...] = (
    "start_ts",
    "fired_ts",
    "end_ts",
    "status",
    "peak_score",
    "peak_ts",
    "max_severity",
    "n_points",
)
TRANSITION_COLUMNS: tuple[str, ...] = (
    "kind",
    "ts",
    "opened_at",
    "score",
    "severity",
    "peak_score",
    "by",
    "note",
)
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

Duration = timedelta | float | int


def _duration(value: Duration | None, name: str, *, positive: bool = False) -> pd.Timedelta | None:
    """A timedelta or a number of seconds, as a non-negative (or positive) pd.Timedelta."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a timedelta or seconds, not bool")
    td = pd.Timedelta(seconds=value) if isinstance(value, int | float) else pd.Timedelta(value)
    if pd.isna(td) or td < pd.Timedelta(0) or (positive and td == pd.Timedelta(0)):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return td


@dataclass(frozen=True)
class AlertPolicy:
    """Thresholds and timing of the alert state machine (see the module docstring).

    Durations accept a ``timedelta`` or seconds and are stored as ``pd.Timedelta``.
    ``min_duration``/``min_count`` None = that firing condition is off (both off = fire at once);
    ``max_gap`` None = no gap breaks an episode.
    """

    fire_threshold: float = 1.0
    resolve_threshold: float = 0.7
    min_duration: Duration | None = None
    min_count: int | None = None
    cooldown: Duration = 0
    max_gap: Duration | None = None

    def __post_init__(self) -> None:
        fire, resolve = float(self.fire_threshold), float(self.resolve_threshold)
        if not (math.isfinite(fire) and math.isfinite(resolve)):
            raise ValueError("thresholds must be finite")
        if not resolve < fire:
            raise ValueError(f"resolve_threshold ({resolve}) must be < fire_threshold ({fire})")
        count = self.min_count
        if count is not None and (isinstance(count, bool) or int(count) != count or count < 1):
            raise ValueError(f"min_count must be an integer >= 1, got {count!r}")
        set_ = object.__setattr__
        set_(self, "fire_threshold", fire)
        set_(self, "resolve_threshold", resolve)
        set_(self, "min_count", None if count is None else int(count))
        set_(self, "min_duration", _duration(self.min_duration, "min_duration"))
        set_(self, "cooldown", _duration(self.cooldown, "cooldown"))
        set_(self, "max_gap", _duration(self.max_gap, "max_gap", positive=True))

    def _ns(self, name: str) -> int | None:
        value = getattr(self, name)
        return None if value is None else int(value.value)


DEFAULT_POLICY = AlertPolicy()


# ---------------------------------------------------------------------------------------------
# Timestamps: int64 ns inside, tz-aware UTC pd.Timestamp outside.


def _stamp(ns: int | None) -> pd.Timestamp | None:
    return None if ns is None else pd.Timestamp(int(ns), unit="ns", tz="UTC")


def _ns(moment: datetime | str | None) -> int | None:
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.as_unit("ns").value)


def _ts_ns(ts: Any) -> npt.NDArray[np.int64]:
    """datetime64 array / Series / DatetimeIndex (naive = UTC) -> int64 ns since the epoch."""
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise ValueError("ts must not contain NaT")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def _severity_ranks(severity: Any, n: int) -> npt.NDArray[np.int8]:
    if severity is None:
        return np.zeros(n, dtype=np.int8)
    values = pd.Series(np.asarray(severity, dtype=object))
    if len(values) != n:
        raise ValueError("severity must have the same length as ts")
    ranks = values.map(_RANK)
    unknown = ranks.isna() & values.notna()
    if unknown.any():
        raise ValueError(f"unknown severities {sorted(set(values[unknown]))}; use {SEVERITIES}")
    return ranks.fillna(0).to_numpy(dtype=np.int8)


@dataclass(frozen=True)
class _Points:
    t: npt.NDArray[np.int64]
    s: npt.NDArray[np.float64]
    sev: npt.NDArray[np.int8]


def _points(ts: Any, score: Any, severity: Any) -> _Points:
    """Valid (non-NaN) points in order; ts must be strictly increasing."""
    t = _ts_ns(ts)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != t.shape:
        raise ValueError("ts and score must have the same length")
    return _valid(t, s, _severity_ranks(severity, len(t)))


def _valid(t: npt.NDArray[np.int64], s: npt.NDArray[np.float64],
           sev: npt.NDArray[np.int8]) -> _Points:
    keep = ~np.isnan(s)
    t, s, sev = t[keep], s[keep], sev[keep]
    if len(t) > 1 and not (np.diff(t) > 0).all():
        raise ValueError("ts must be strictly increasing within a series")
    return _Points(t, s, sev)


# ---------------------------------------------------------------------------------------------
# Persisted state and transitions.


@dataclass(frozen=True)
class Transition:
    """One change of an alert. ``score`` is the score of the point at ``ts`` that caused it
    (None for manual actions and gap resolves); ``severity`` is the alert's max severity."""

    kind: str
    ts: pd.Timestamp
    opened_at: pd.Timestamp
    score: float | None
    severity: str
    peak_score: float | None
    by: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TS_FIELDS = (
    "opened_at",
    "fired_at",
    "last_above_ts",
    "last_ts",
    "peak_ts",
    "cooldown_until",
    "resolved_at",
    "acked_at",
)


@dataclass(frozen=True)
class AlertState:
    """The persisted state of one key.

    ``state``: None (idle), "pending"/"firing" (open), "resolved" or "cooldown" (closed; cooldown
    while ``last_ts < cooldown_until``). Episode fields describe the open episode, or the last
    resolved one while closed. ``last_ts`` is the last processed point of the key;
    ``last_above_ts`` the last point of the episode (score >= resolve). ``n_above_fire`` counts
    the episode's points >= fire (for ``min_count``). Timestamps are tz-aware UTC.
    """

    state: str | None = None
    opened_at: pd.Timestamp | None = None
    fired_at: pd.Timestamp | None = None
    last_above_ts: pd.Timestamp | None = None
    last_ts: pd.Timestamp | None = None
    peak_score: float | None = None
    peak_ts: pd.Timestamp | None = None
    max_severity: str = "none"
    n_points: int = 0
    n_above_fire: int = 0
    cooldown_until: pd.Timestamp | None = None
    resolved_at: pd.Timestamp | None = None
    acked_by: str | None = None
    acked_note: str | None = None
    acked_at: pd.Timestamp | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable: timestamps as ISO 8601 strings (ns precision kept)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if f.name in _TS_FIELDS and value is not None else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        kwargs = {f.name: data.get(f.name, f.default) for f in fields(cls)}
        for name in _TS_FIELDS:
            kwargs[name] = _stamp(_ns(kwargs[name]))
        return cls(**kwargs)


def _closed_label(cooldown_until: int | None, last_ts: int | None) -> str:
    if cooldown_until is not None and (last_ts is None or last_ts < cooldown_until):
        return "cooldown"
    return "resolved"


# ---------------------------------------------------------------------------------------------
# The scan: one pass over a series' points, vectorized within each episode.


@dataclass
class _Episode:
    opened_at: int
    last_ts: int
    fired_at: int | None = None
    end: int | None = None
    peak_score: float = -math.inf
    peak_ts: int | None = None
    max_sev: int = 0
    n_points: int = 0
    n_above_fire: int = 0
    acked_by: str | None = None
    acked_note: str | None = None
    acked_at: int | None = None

    @classmethod
    def from_state(cls, state: AlertState) -> _Episode:
        return cls(
            opened_at=_ns(state.opened_at),
            last_ts=_ns(state.last_above_ts),
            fired_at=_ns(state.fired_at),
            peak_score=-math.inf if state.peak_score is None else state.peak_score,
            peak_ts=_ns(state.peak_ts),
            max_sev=_RANK[state.max_severity],
            n_points=state.n_points,
            n_above_fire=state.n_above_fire,
            acked_by=state.acked_by,
            acked_note=state.acked_note,
            acked_at=_ns(state.acked_at),
        )

    def transition(self, kind: str, ts: int, score: float | None, peak: float) -> Transition:
        return Transition(
            kind=kind,
            ts=_stamp(ts),
            opened_at=_stamp(self.opened_at),
            score=None if score is None else float(score),
            severity=SEVERITIES[self.max_sev],
            peak_score=None if peak == -math.inf else float(peak),
        )


def _fire_index(
    seg_t: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], opened_at: int, pol: AlertPolicy
) -> int | None:
    """Index in the segment where a pending episode fires (either condition), else None."""
    duration = pol._ns("min_duration")
    if pol.min_count is None and duration is None:
        return 0
    candidates = []
    if pol.min_count is not None:
        candidates.append(int(np.searchsorted(counts, pol.min_count, side="left")))
    if duration is not None:
        candidates.append(int(np.searchsorted(seg_t, opened_at + duration, side="left")))
    first = min(candidates)
    return first if first < len(seg_t) else None


def _extend(ep: _Episode, p: _Points, i: int, j: int, pol: AlertPolicy) -> list[Transition]:
    """Add points i..j (all >= resolve, no gap) to the episode; fired/escalated transitions."""
    if j < i:
        return []
    seg_t, seg_s = p.t[i : j + 1], p.s[i : j + 1]
    counts = ep.n_above_fire + np.cumsum(seg_s >= pol.fire_threshold)
    sev = np.maximum.accumulate(np.maximum(p.sev[i : j + 1], ep.max_sev))
    rises = np.flatnonzero(sev > np.concatenate(([ep.max_sev], sev[:-1])))
    peak = np.maximum(np.maximum.accumulate(seg_s), ep.peak_score)
    out: list[Transition] = []
    if ep.fired_at is None:
        fire = _fire_index(seg_t, counts, ep.opened_at, pol)
        if fire is None:
            rises = rises[:0]
        else:
            ep.fired_at = int(seg_t[fire])
            ep.max_sev = int(sev[fire])
            out.append(ep.transition("fired", ep.fired_at, seg_s[fire], peak[fire]))
            rises = rises[rises > fire]
    for k in rises:
        ep.max_sev = int(sev[k])
        out.append(ep.transition("escalated", int(seg_t[k]), seg_s[k], peak[k]))
    top = int(np.argmax(seg_s))
    if seg_s[top] > ep.peak_score:
        ep.peak_score, ep.peak_ts = float(seg_s[top]), int(seg_t[top])
    ep.max_sev = int(sev[-1])
    ep.n_points += len(seg_t)
    ep.n_above_fire = int(counts[-1])
    ep.last_ts = int(seg_t[-1])
    return out


@dataclass
class _Scan:
    episodes: list[_Episode]
    transitions: list[Transition]
    cooldown_until: int | None


def _scan(
    p: _Points, carry: _Episode | None, cooldown_until: int | None, pol: AlertPolicy
) -> _Scan:
    n = len(p.t)
    gap_ns, cooldown_ns = pol._ns("max_gap"), pol._ns("cooldown") or 0
    mid = p.s >= pol.resolve_threshold
    gap = np.zeros(n, dtype=bool)
    if gap_ns is not None:
        gap[1:] = np.diff(p.t) > gap_ns
    stop = np.ones(n, dtype=bool)  # last point of a run of points >= resolve with no gap
    stop[:-1] = ~mid[1:] | gap[1:]
    stops, highs = np.flatnonzero(stop), np.flatnonzero(p.s >= pol.fire_threshold)
    out = _Scan([], [], cooldown_until)
    pos = 0 if cooldown_until is None else int(np.searchsorted(p.t, cooldown_until, side="left"))
    ep, start = carry, 0
    if ep is None:
        ep, start = _open_next(p, highs, pos, out)
    while ep is not None:
        broken = gap_ns is not None and p.t[start] - ep.last_ts > gap_ns
        end_idx = start - 1 if broken or not mid[start] else _run_end(stops, start)
        out.transitions += _extend(ep, p, start, end_idx, pol)
        out.episodes.append(ep)
        nxt = end_idx + 1
        if nxt >= n:
            break
        gap_end = ep.last_ts + gap_ns if gap_ns is not None else None
        by_gap = gap_end is not None and p.t[nxt] > gap_end
        _close(ep, gap_end if by_gap else int(p.t[nxt]), None if by_gap else p.s[nxt], out)
        if ep.fired_at is not None:
            out.cooldown_until = ep.end + cooldown_ns
            pos = max(nxt, int(np.searchsorted(p.t, out.cooldown_until, side="left")))
        else:
            pos = nxt
        ep, start = _open_next(p, highs, pos, out)
    return out


def _run_end(stops: npt.NDArray[np.intp], i: int) -> int:
    return int(stops[np.searchsorted(stops, i, side="left")])


def _open_next(
    p: _Points, highs: npt.NDArray[np.intp], pos: int, out: _Scan
) -> tuple[_Episode | None, int]:
    q = int(np.searchsorted(highs, pos, side="left"))
    if q >= len(highs):
        return None, 0
    i = int(highs[q])
    ep = _Episode(opened_at=int(p.t[i]), last_ts=int(p.t[i]), max_sev=int(p.sev[i]))
    out.transitions.append(ep.transition("opened", ep.opened_at, p.s[i], p.s[i]))
    return ep, i


def _close(ep: _Episode, end: int, score: float | None, out: _Scan) -> None:
    ep.end = end
    kind = "resolved" if ep.fired_at is not None else "cancelled"
    out.transitions.append(ep.transition(kind, end, score, ep.peak_score))


# ---------------------------------------------------------------------------------------------
# Public API.


def _status(ep: _Episode) -> str:
    if ep.end is None:
        return "firing" if ep.fired_at is not None else "pending"
    return "resolved" if ep.fired_at is not None else "cancelled"


def episodes(
    ts: Any, score: Any, severity: Any = None, policy: AlertPolicy = DEFAULT_POLICY
) -> pd.DataFrame:
    """Alert episodes of one series, one row each, in time order.

    Columns: start_ts (opening point), fired_ts (NaT if it never fired), end_ts (NaT if still
    open at the end of the data), status ("resolved", "firing", "cancelled" = ended while
    pending, "pending" = open and not fired), peak_score, peak_ts (first ts of the peak),
    max_severity, n_points (points from the opening point to the last point >= resolve).
    Keep ``fired_ts.notna()`` rows for alerts that notified someone.
    """
    found = _scan(_points(ts, score, severity), None, None, policy).episodes
    frame = pd.DataFrame(
        {
            "start_ts": pd.to_datetime([e.opened_at for e in found], unit="ns", utc=True),
            "fired_ts": pd.to_datetime([e.fired_at for e in found], unit="ns", utc=True),
            "end_ts": pd.to_datetime([e.end for e in found], unit="ns", utc=True),
            "status": pd.Series([_status(e) for e in found], dtype=object),
            "peak_score": np.array([e.peak_score for e in found], dtype=np.float64),
            "peak_ts": pd.to_datetime([e.peak_ts for e in found], unit="ns", utc=True),
            "max_severity": pd.Series([SEVERITIES[e.max_sev] for e in found], dtype=object),
            "n_points": np.array([e.n_points for e in found], dtype=np.int64),
        }
    )
    return frame.loc[:, list(EPISODE_COLUMNS)]


def _state_from(ep: _Episode, last_ts: int, cooldown_until: int | None) -> AlertState:
    if ep.end is None:
        label = "firing" if ep.fired_at is not None else "pending"
    else:
        label = _closed_label(cooldown_until, last_ts)
    return AlertState(
        state=label,
        opened_at=_stamp(ep.opened_at),
        fired_at=_stamp(ep.fired_at),
        last_above_ts=_stamp(ep.last_ts),
        last_ts=_stamp(last_ts),
        peak_score=None if ep.peak_score == -math.inf else ep.peak_score,
        peak_ts=_stamp(ep.peak_ts),
        max_severity=SEVERITIES[ep.max_sev],
        n_points=ep.n_points,
        n_above_fire=ep.n_above_fire,
        cooldown_until=_stamp(cooldown_until if ep.end is not None else None),
        resolved_at=_stamp(ep.end),
        acked_by=ep.acked_by,
        acked_note=ep.acked_note,
        acked_at=_stamp(ep.acked_at),
    )


def _final_state(old: AlertState, scan: _Scan, last_ts: int) -> AlertState:
    if not scan.episodes:  # old was idle or closed: only the clock moves
        if old.state is None:
            return replace(old, last_ts=_stamp(last_ts))
        label = _closed_label(_ns(old.cooldown_until), last_ts)
        return replace(old, state=label, last_ts=_stamp(last_ts))
    last = scan.episodes[-1]
    if last.end is not None and last.fired_at is None:  # cancelled: back to idle
        return AlertState(last_ts=_stamp(last_ts))
    return _state_from(last, last_ts, scan.cooldown_until)


def advance(
    state: AlertState | None,
    ts: Any,
    score: Any,
    severity: Any = None,
    policy: AlertPolicy = DEFAULT_POLICY,
) -> tuple[AlertState, list[Transition]]:
    """Process one key's next points in order, continuing the state from the previous batch.

    Points with ``ts <= state.last_ts`` are skipped as already seen. Splitting a series into
    consecutive calls gives the same transitions and final state as one call.
    """
    return _advance(state, _points(ts, score, severity), policy)


def _advance(state: AlertState | None, p: _Points, policy: AlertPolicy
             ) -> tuple[AlertState, list[Transition]]:
    old = state or AlertState()
    seen = _ns(old.last_ts)
    if seen is not None:
        keep = p.t > seen
        p = _Points(p.t[keep], p.s[keep], p.sev[keep])
    if len(p.t) == 0:
        return old, []
    carry = _Episode.from_state(old) if old.is_open else None
    cooldown = None if old.is_open else _ns(old.cooldown_until)
    scan = _scan(p, carry, cooldown, policy)
    return _final_state(old, scan, int(p.t[-1])), scan.transitions


def transitions_frame(transitions: Sequence[Transition]) -> pd.DataFrame:
    """Transitions as a DataFrame with TRANSITION_COLUMNS (ts columns tz-aware UTC)."""
    frame = pd.DataFrame([t.to_dict() for t in transitions], columns=list(TRANSITION_COLUMNS))
    for column in ("ts", "opened_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("score", "peak_score"):
        frame[column] = frame[column].astype(np.float64)
    return frame


def advance_many(
    states: dict[Hashable, AlertState],
    frame: pd.DataFrame,
    policy: AlertPolicy = DEFAULT_POLICY,
    keys: str | list[str] = "key",
) -> tuple[dict[Hashable, AlertState], pd.DataFrame]:
    """``advance`` for every key in ``frame`` (columns: the key column(s), ts, score and
    optionally severity). One state per key means at most one open alert per key, so make the
    key ``(device_id, metric, kind)``. Keys absent from ``frame`` keep their state. Returns the
    new states and the transitions with the key column(s) first.
    """
    key_cols = [keys] if isinstance(keys, str) else list(keys)
    new_states = dict(states)
    ordered = frame.sort_values([*key_cols, "ts"], kind="stable")
    if ordered[key_cols].isna().to_numpy().any():  # as groupby: rows without a key are skipped
        ordered = ordered[ordered[key_cols].notna().all(axis=1)]
    # Timestamps, scores and severity ranks once for the whole frame, then one slice per key
    # (pandas' groupby and a per-key severity map were most of a day's alert pass).
    t = _ts_ns(ordered["ts"])
    s = ordered["score"].to_numpy(dtype=np.float64)
    sev = _severity_ranks(ordered["severity"].to_numpy() if "severity" in ordered else None,
                          len(t))
    key_values = [ordered[c].to_numpy() for c in key_cols]
    changed = np.zeros(len(t), dtype=bool)
    changed[:1] = True
    for values in key_values:
        changed[1:] |= values[1:] != values[:-1]
    bounds = [*np.flatnonzero(changed), len(t)]
    found_keys: list[tuple[Any, ...]] = []
    found: list[Transition] = []
    for a, b in itertools.pairwise(bounds):
        values = tuple(v[a] for v in key_values)
        key = values if len(key_cols) > 1 else values[0]
        new_states[key], moved = _advance(states.get(key), _valid(t[a:b], s[a:b], sev[a:b]),
                                          policy)
        found_keys += [values] * len(moved)
        found += moved
    out = transitions_frame(found)
    for position, column in enumerate(key_cols):
        out.insert(position, column, pd.Series([k[position] for k in found_keys],
                                               dtype=object if not found else None))
    return new_states, out


def _manual(kind: str, state: AlertState, by: str, note: str | None, ts: Any) -> Transition:
    if not state.is_open:
        raise ValueError(f"cannot {kind} an alert in state {state.state!r}: none is open")
    return Transition(
        kind=kind,
        ts=_stamp(_ns(ts)),
        opened_at=state.opened_at,
        score=None,
        severity=state.max_severity,
        peak_score=state.peak_score,
        by=by,
        note=note,
    )


def acknowledge(
    state: AlertState, by: str, note: str | None, ts: Any
) -> tuple[AlertState, Transition]:
    """A person acknowledges the open alert: it stays open; who, why and when are recorded
    (until the episode ends and a new one opens)."""
    transition = _manual("acknowledged", state, by, note, ts)
    return replace(state, acked_by=by, acked_note=note, acked_at=transition.ts), transition


def resolve_manually(
    state: AlertState, by: str, note: str | None, ts: Any, policy: AlertPolicy = DEFAULT_POLICY
) -> tuple[AlertState, Transition]:
    """A person resolves the open alert at ``ts``: it closes and the cooldown starts at ``ts``
    (points before ``ts + policy.cooldown`` are ignored by later ``advance`` calls)."""
    transition = _manual("resolved", state, by, note, ts)
    end = _ns(ts)
    cooldown_until = end + (policy._ns("cooldown") or 0)
    closed = replace(
        state,
        state=_closed_label(cooldown_until, _ns(state.last_ts)),
        resolved_at=transition.ts,
        cooldown_until=_stamp(cooldown_until),
        resolved_by=by,
        resolved_note=note,
    )
    return closed, transition
