"""The alert state machine: rules on hand-made series, a per-point reference, batch splits."""

from __future__ import annotations

import itertools
import json
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.alerts import (
    SEVERITIES,
    AlertPolicy,
    AlertState,
    Transition,
    acknowledge,
    advance,
    advance_many,
    episodes,
    resolve_manually,
)

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def grid(n: int, step: float = 10) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([at(i * step) for i in range(n)])


def kinds(transitions: list[Transition]) -> list[tuple[str, float]]:
    return [(t.kind, (t.ts - T0).total_seconds()) for t in transitions]


# --- firing rules -----------------------------------------------------------------------------


def test_single_crossing_below_min_count_never_fires() -> None:
    scores = [0.2, 1.5, 0.2, 0.1]
    _, found = advance(None, grid(4), scores, policy=AlertPolicy(min_count=2))
    assert kinds(found) == [("opened", 10), ("cancelled", 20)]
    eps = episodes(grid(4), scores, policy=AlertPolicy(min_count=2))
    assert eps["status"].tolist() == ["cancelled"]
    assert eps["fired_ts"].isna().all()


def test_short_run_below_min_duration_never_fires() -> None:
    scores = [0.2, 1.5, 1.2, 0.2]  # above resolve from 10 s to 20 s: 10 s < 30 s
    state, found = advance(None, grid(4), scores, policy=AlertPolicy(min_duration=30))
    assert kinds(found) == [("opened", 10), ("cancelled", 30)]
    assert state.state is None


def test_sustained_run_fires_when_min_count_reached() -> None:
    scores = [0.2, 1.2, 0.9, 1.1, 1.3, 1.4, 0.2]  # points >= fire: 10, 30, 40 s
    _, found = advance(None, grid(7), scores, policy=AlertPolicy(min_count=3))
    assert kinds(found) == [("opened", 10), ("fired", 40), ("resolved", 60)]


def test_sustained_run_fires_after_min_duration_counting_dips_above_resolve() -> None:
    scores = [0.2, 1.2, 0.9, 0.8, 0.75, 1.4, 0.2]
    eps = episodes(grid(7), scores, policy=AlertPolicy(min_duration=timedelta(seconds=30)))
    row = eps.iloc[0]
    assert (row.start_ts, row.fired_ts, row.end_ts) == (at(10), at(40), at(60))
    assert (row.status, row.peak_score, row.peak_ts, row.n_points) == ("resolved", 1.4, at(50), 5)


def test_either_condition_fires_first() -> None:
    scores = [1.2, 1.2, 0.9, 0.9, 0.9, 0.2]
    by_count = AlertPolicy(min_count=2, min_duration=35)
    assert kinds(advance(None, grid(6), scores, policy=by_count)[1])[1] == ("fired", 10)
    by_time = AlertPolicy(min_count=5, min_duration=30)
    assert kinds(advance(None, grid(6), scores, policy=by_time)[1])[1] == ("fired", 30)


def test_no_condition_fires_at_the_opening_point() -> None:
    _, found = advance(None, grid(3), [0.1, 1.0, 0.1])
    assert kinds(found) == [("opened", 10), ("fired", 10), ("resolved", 20)]


# --- hysteresis, cooldown, gaps -----------------------------------------------------------------


def test_hysteresis_dips_keep_it_open_and_below_resolve_closes() -> None:
    scores = [1.2, 0.8, 0.9, 0.7, 1.1, 0.69, 1.0]
    _, found = advance(None, grid(7), scores)
    assert kinds(found) == [
        ("opened", 0),
        ("fired", 0),
        ("resolved", 50),
        ("opened", 60),
        ("fired", 60),
    ]
    eps = episodes(grid(7), scores)
    assert eps["n_points"].tolist() == [5, 1]
    assert eps["status"].tolist() == ["resolved", "firing"]
    assert pd.isna(eps["end_ts"].iloc[1])


def test_cooldown_suppresses_reopen_then_allows_it() -> None:
    policy = AlertPolicy(cooldown=60)
    scores = [1.2, 0.2, 1.3, 1.3, 0.2, 0.2, 0.2, 1.5, 0.2]  # resolved at 10 s: quiet until 70 s
    state, found = advance(None, grid(9), scores, policy=policy)
    assert kinds(found) == [
        ("opened", 0),
        ("fired", 0),
        ("resolved", 10),
        ("opened", 70),
        ("fired", 70),
        ("resolved", 80),
    ]
    assert state.state == "cooldown" and state.cooldown_until == at(140)


def test_points_in_cooldown_extend_nothing() -> None:
    scores = [1.2, 0.2] + [1.3] * 8  # high throughout the cooldown
    eps = episodes(grid(10), scores, policy=AlertPolicy(cooldown=60))
    assert eps["start_ts"].tolist() == [at(0), at(70)]
    assert eps["n_points"].tolist() == [1, 3]


def test_cancelled_pending_starts_no_cooldown() -> None:
    scores = [1.2, 0.2, 1.3, 1.3]
    eps = episodes(grid(4), scores, policy=AlertPolicy(cooldown=600, min_count=2))
    assert eps["status"].tolist() == ["cancelled", "firing"]
    assert eps["fired_ts"].iloc[1] == at(30)


def test_max_gap_splits_an_episode() -> None:
    ts = pd.DatetimeIndex([at(s) for s in (0, 10, 20, 100, 110)])
    state, found = advance(None, ts, [1.5] * 5, policy=AlertPolicy(max_gap=30))
    first = [("opened", 0), ("fired", 0), ("resolved", 50)]
    assert kinds(found) == [*first, ("opened", 100), ("fired", 100)]
    assert found[2].score is None  # resolved by the gap, not by a point
    assert state.state == "firing" and state.n_points == 2


def test_nan_scores_are_skipped_not_resolving() -> None:
    scores = [1.2, np.nan, np.nan, 1.1, 0.1]
    _, found = advance(None, grid(5), scores)
    assert kinds(found) == [("opened", 0), ("fired", 0), ("resolved", 40)]


# --- severity, dedup, manual actions ----------------------------------------------------------


def test_escalation_when_severity_rises_while_firing() -> None:
    sev = ["low", "low", "high", "medium", "critical", "high"]
    _, found = advance(None, grid(6), [1.5] * 6, sev, AlertPolicy(min_count=2))
    assert [(k, t.severity) for (k, _), t in zip(kinds(found), found, strict=True)] == [
        ("opened", "low"),
        ("fired", "low"),
        ("escalated", "high"),
        ("escalated", "critical"),
    ]
    assert [t.ts for t in found[2:]] == [at(20), at(40)]


def test_severity_rise_while_pending_is_folded_into_fired() -> None:
    _, found = advance(None, grid(2), [1.5, 1.5], ["low", "high"], AlertPolicy(min_count=2))
    assert [(t.kind, t.severity) for t in found] == [("opened", "low"), ("fired", "high")]


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown severities"):
        advance(None, grid(1), [1.5], ["urgent"])


def test_one_open_alert_per_key_despite_many_crossings() -> None:
    scores = [1.2, 0.8] * 20
    state, found = advance(None, grid(40), scores)
    assert [t.kind for t in found] == ["opened", "fired"]
    assert state.state == "firing" and state.n_points == 40 and state.n_above_fire == 20


def test_advance_many_keeps_one_state_per_key_with_kind_in_it() -> None:
    frame = pd.DataFrame(
        {
            "key": [(1, "co2", "device")] * 3 + [(1, "co2", "data")] * 3 + [(2, "multi", "device")],
            "ts": list(grid(3)) * 2 + [at(0)],
            "score": [1.2, 1.3, 0.1, 1.5, 0.9, 0.8, 0.2],
            "severity": ["low"] * 7,
        }
    )
    states, transitions = advance_many({}, frame)
    assert states[(1, "co2", "device")].state == "resolved"
    assert states[(1, "co2", "data")].state == "firing"
    assert states[(2, "multi", "device")].state is None
    assert list(transitions.columns[:2]) == ["key", "kind"]
    assert transitions.groupby("key")["kind"].apply(list).to_dict() == {
        (1, "co2", "device"): ["opened", "fired", "resolved"],
        (1, "co2", "data"): ["opened", "fired"],
    }


def test_advance_many_with_key_columns_and_untouched_keys() -> None:
    old = AlertState(state="resolved", last_ts=at(0))
    frame = pd.DataFrame({"device_id": [1, 1], "metric": ["co2"] * 2, "ts": grid(2)})
    frame["score"] = [1.1, 1.2]
    states, transitions = advance_many({(9, "x"): old}, frame, keys=["device_id", "metric"])
    assert states[(9, "x")] is old and states[(1, "co2")].state == "firing"
    assert transitions[["device_id", "metric"]].drop_duplicates().values.tolist() == [[1, "co2"]]
    _, none = advance_many({}, frame.iloc[:0], keys=["device_id", "metric"])
    assert none.empty and list(none.columns[:3]) == ["device_id", "metric", "kind"]


def test_acknowledge_keeps_it_open_and_records_who() -> None:
    state, _ = advance(None, grid(2), [1.5, 1.5])
    state, tr = acknowledge(state, "ana", "looking at the fan", at(15))
    assert (tr.kind, tr.by, tr.note, tr.ts) == ("acknowledged", "ana", "looking at the fan", at(15))
    state, found = advance(state, pd.DatetimeIndex([at(20)]), [1.1])
    assert found == [] and state.state == "firing" and state.acked_by == "ana"
    with pytest.raises(ValueError, match="none is open"):
        acknowledge(AlertState(), "ana", None, at(30))


def test_manual_resolve_closes_and_starts_cooldown() -> None:
    policy = AlertPolicy(cooldown=60)
    state, _ = advance(None, grid(2), [1.5, 1.5], policy=policy)
    state, tr = resolve_manually(state, "bo", "sensor replaced", at(15), policy)
    assert (tr.kind, tr.by, state.state, state.resolved_by) == ("resolved", "bo", "cooldown", "bo")
    assert state.cooldown_until == at(75)
    state, found = advance(state, grid(10)[2:], [1.5] * 8, policy=policy)  # 20 s .. 90 s
    assert kinds(found) == [("opened", 80), ("fired", 80)]
    assert state.acked_by is None and state.resolved_by is None


def test_already_seen_points_are_skipped() -> None:
    state, first = advance(None, grid(3), [1.5, 1.5, 0.1])
    again, second = advance(state, grid(3), [1.5, 1.5, 0.1])
    assert second == [] and again == state and len(first) == 3


def test_ts_must_increase_within_a_call() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        advance(None, pd.DatetimeIndex([at(10), at(0)]), [1.0, 1.0])


def test_policy_validation_and_seconds() -> None:
    with pytest.raises(ValueError, match="resolve_threshold"):
        AlertPolicy(fire_threshold=1.0, resolve_threshold=1.0)
    with pytest.raises(ValueError, match="min_count"):
        AlertPolicy(min_count=0)
    with pytest.raises(ValueError, match="max_gap"):
        AlertPolicy(max_gap=0)
    with pytest.raises(ValueError, match="cooldown"):
        AlertPolicy(cooldown=-1)
    policy = AlertPolicy(min_duration=90, cooldown=timedelta(minutes=5))
    assert policy.min_duration == pd.Timedelta(seconds=90)
    assert policy.cooldown == pd.Timedelta(minutes=5)


def test_state_json_round_trip() -> None:
    state, _ = advance(None, grid(4), [1.5, 2.5, 0.9, 1.1], ["low", "high", "none", "low"])
    state, _ = acknowledge(state, "ana", "ok", at(35))
    text = json.dumps(state.to_dict())
    assert AlertState.from_dict(json.loads(text)) == state
    closed, _ = resolve_manually(state, "bo", None, at(40), AlertPolicy(cooldown=30))
    assert AlertState.from_dict(json.loads(json.dumps(closed.to_dict()))) == closed
    assert AlertState.from_dict(AlertState().to_dict()) == AlertState()


def test_episodes_of_an_empty_series() -> None:
    eps = episodes(np.array([], dtype="datetime64[ns]"), np.array([]))
    assert eps.empty and "fired_ts" in eps.columns


# --- a per-point reference and batch-split invariance -----------------------------------------

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def reference(
    t: list[int], s: list[float], sev: list[str | None], pol: AlertPolicy
) -> list[tuple[str, int, str]]:
    """The documented rules, one point at a time (slow, obvious)."""
    out: list[tuple[str, int, str]] = []
    ep: dict | None = None
    cooldown_until = None
    gap = None if pol.max_gap is None else pol.max_gap.value
    for ti, si, vi in zip(t, s, sev, strict=True):
        if math.isnan(si):
            continue
        rank = _RANK[vi or "none"]
        if ep is not None:
            gap_end = None if gap is None else ep["last"] + gap
            if (gap_end is not None and ti > gap_end) or si < pol.resolve_threshold:
                end = gap_end if gap_end is not None and ti > gap_end else ti
                fired = ep["fired"] is not None
                out.append(("resolved" if fired else "cancelled", end, SEVERITIES[ep["sev"]]))
                if fired:
                    cooldown_until = end + pol.cooldown.value
                ep = None
            else:
                _reference_point(ep, ti, si, rank, pol, out)
                continue
        if cooldown_until is not None and ti < cooldown_until:
            continue
        if si >= pol.fire_threshold:
            ep = {"open": ti, "fired": None, "sev": rank, "n_hi": 0, "last": ti}
            out.append(("opened", ti, SEVERITIES[rank]))
            _reference_point(ep, ti, si, rank, pol, out)
    return out


def _reference_point(ep: dict, ti: int, si: float, rank: int, pol: AlertPolicy, out: list) -> None:
    ep["last"] = ti
    ep["n_hi"] += si >= pol.fire_threshold
    if rank > ep["sev"]:
        ep["sev"] = rank
        if ep["fired"] is not None:
            out.append(("escalated", ti, SEVERITIES[rank]))
    by_count = pol.min_count is not None and ep["n_hi"] >= pol.min_count
    by_time = pol.min_duration is not None and ti - ep["open"] >= pol.min_duration.value
    no_rule = pol.min_count is None and pol.min_duration is None
    if ep["fired"] is None and (by_count or by_time or no_rule):
        ep["fired"] = ti
        out.append(("fired", ti, SEVERITIES[ep["sev"]]))


policies = st.builds(
    AlertPolicy,
    min_count=st.sampled_from([None, 1, 2, 3]),
    min_duration=st.sampled_from([None, 0, 20, 45]),
    cooldown=st.sampled_from([0, 30, 60]),
    max_gap=st.sampled_from([None, 30, 60]),
)
series = st.integers(0, 50).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([10, 10, 10, 20, 40, 90]), min_size=n, max_size=n),
        st.lists(
            st.sampled_from([math.nan, 0.2, 0.69, 0.7, 0.9, 1.0, 1.3, 2.5]), min_size=n, max_size=n
        ),
        st.lists(st.sampled_from([None, *SEVERITIES]), min_size=n, max_size=n),
        st.lists(st.integers(0, n), max_size=5),
    )
)


def _split(steps: list[int], cuts: list[int]) -> tuple[pd.DatetimeIndex, list[int]]:
    ts = pd.DatetimeIndex([at(s) for s in np.cumsum(steps)]) if steps else grid(0)
    return ts, [0, *sorted(cuts), len(steps)]


def _signature(found: list[Transition]) -> list[tuple[str, int, str]]:
    return [(t.kind, t.ts.value, t.severity) for t in found]


@settings(max_examples=300, deadline=None)
@given(series, policies)
def test_matches_the_per_point_reference(data: tuple, policy: AlertPolicy) -> None:
    steps, scores, sev, _ = data
    ts, _ = _split(steps, [])
    _, found = advance(None, ts, scores, sev, policy)
    assert _signature(found) == reference(list(ts.asi8), scores, sev, policy)


@settings(max_examples=300, deadline=None)
@given(series, policies)
def test_batch_split_invariance(data: tuple, policy: AlertPolicy) -> None:
    steps, scores, sev, cuts = data
    ts, bounds = _split(steps, cuts)
    whole_state, whole = advance(None, ts, scores, sev, policy)
    state: AlertState | None = None
    pieces: list[Transition] = []
    for lo, hi in itertools.pairwise(bounds):
        state, found = advance(state, ts[lo:hi], scores[lo:hi], sev[lo:hi], policy)
        state = AlertState.from_dict(json.loads(json.dumps(state.to_dict())))  # persisted
        pieces += found
    assert pieces == whole
    assert state == whole_state


def test_advance_many_equals_advance_per_key_whatever_the_row_order() -> None:
    rng = np.random.default_rng(17)
    n = 3000
    frame = pd.DataFrame({
        "device_id": rng.integers(1, 6, n),
        "metric": rng.choice(["co2", "humidity", "temperature"], n),
        "ts": T0 + pd.to_timedelta(rng.permutation(n) * 10, unit="s"),
        "score": np.where(rng.random(n) < 0.05, np.nan, rng.gamma(1.0, 0.4, n)),
        "severity": rng.choice(list(SEVERITIES), n),
    })
    frame.loc[7, "device_id"] = None  # no key: skipped, as pandas' groupby skips it
    keys = ["device_id", "metric"]
    states, transitions = advance_many({}, frame, keys=keys)
    keyed = frame.dropna(subset=keys)
    assert len(states) == keyed[keys].drop_duplicates().shape[0]
    for (device, metric), rows in keyed.sort_values("ts").groupby(keys):
        state, found = advance(None, rows["ts"], rows["score"].to_numpy(),
                               rows["severity"].to_numpy())
        assert states[(device, metric)] == state
        mine = transitions[(transitions["device_id"] == device)
                           & (transitions["metric"] == metric)]
        assert mine["kind"].tolist() == [t.kind for t in found]
        assert mine["ts"].tolist() == [t.ts for t in found]
    assert len(transitions) > 50
