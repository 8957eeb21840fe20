"""PCADetector: multi-metric vectors that break the usual relationship between metrics.

Rows are (device, timestamp) vectors of metric columns (e.g. co2, temperature, humidity,
occupancy). Each row is standardized with its device's training mean and std (devices have
offsets; pass `groups` = device id per row), or with the pooled training mean/std for devices not
seen in fit. PCA (SVD of the standardized clean history) keeps the components explaining
`n_components` of the variance (a float in (0, 1)) or that many components (an int >= 1), and
each row gets two statistics:
  SPE (Q)  squared norm of the residual off the retained subspace: a broken correlation, e.g. a
           ventilation failure (co2, temperature and humidity up while occupancy is normal);
  T2       Hotelling's T^2 on the retained scores: an extreme but well-correlated state.
Thresholds are the training `quantile` of each (default 0.995: 0.5% of clean history above it;
an empirical quantile needs no Gaussian assumption), and
    decision_function = max(SPE / spe_threshold_, T2 / t2_threshold_)   (1.0 = alarm).
contributions(X) says which metrics drove a row: see its docstring. Rows with a NaN feature
score NaN. Scoring is two small matrix products per row block; pointwise, hence causal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from detectors.base import F64, Detector

_MIN_STD = 1e-9


def _matrix(X: Any) -> tuple[F64, list[str] | None]:
    if isinstance(X, pd.DataFrame):
        return X.to_numpy(dtype=np.float64), [str(c) for c in X.columns]
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array (rows x metrics), got shape {arr.shape}")
    return arr, None


class PCADetector(Detector):
    """SPE + Hotelling T^2 on per-device standardized metric vectors."""

    _state_attrs: ClassVar[tuple[str, ...]] = (
        "n_features_in_",
        "feature_names_",
        "mean_",
        "scale_",
        "group_keys_",
        "group_mean_",
        "group_scale_",
        "components_",
        "explained_variance_",
        "spe_threshold_",
        "t2_threshold_",
    )

    def __init__(
        self, n_components: float | int = 0.95, quantile: float = 0.995, min_group_rows: int = 30
    ) -> None:
        self.n_components = n_components
        self.quantile = quantile
        self.min_group_rows = min_group_rows

    # -- standardization ------------------------------------------------------------------
    def _standardize(self, x: F64, groups: Any) -> F64:
        mean = np.broadcast_to(self.mean_, x.shape)
        scale = np.broadcast_to(self.scale_, x.shape)
        if groups is not None and len(self.group_keys_):
            g = np.asarray(groups)
            if g.shape[0] != x.shape[0]:
                raise ValueError("groups must have one entry per row of X")
            pos = pd.Index(self.group_keys_).get_indexer(g)
            known = pos >= 0
            if known.all():
                mean, scale = self.group_mean_[pos], self.group_scale_[pos]
            elif known.any():
                mean, scale = mean.copy(), scale.copy()
                mean[known], scale[known] = (
                    self.group_mean_[pos[known]],
                    self.group_scale_[pos[known]],
                )
        return (x - mean) / scale

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> PCADetector:
        """Learn standardization, components and thresholds from clean history (NaN rows skip)."""
        x, names = _matrix(X)
        self.n_features_in_ = x.shape[1]
        self.feature_names_ = np.array(names or [f"x{i}" for i in range(x.shape[1])], dtype=object)
        ok = ~np.isnan(x).any(axis=1)
        x = x[ok]
        if len(x) <= x.shape[1]:
            raise ValueError("not enough complete rows to fit")
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.maximum(x.std(axis=0), _MIN_STD)
        keys: list[Any] = []
        gm: list[F64] = []
        gs: list[F64] = []
        if groups is not None:
            g = pd.Series(np.asarray(groups)[ok])
            frame = pd.DataFrame(x).groupby(g.to_numpy())
            counts = frame.size()
            big = counts.index[counts.to_numpy() >= self.min_group_rows]
            means = frame.mean().loc[big]
            stds = frame.std(ddof=0).loc[big]
            keys = list(big)
            gm = list(means.to_numpy())
            gs = list(np.maximum(stds.to_numpy(), _MIN_STD))
        self.group_keys_ = np.array(keys, dtype=object)
        k = x.shape[1]
        self.group_mean_ = np.array(gm, dtype=np.float64).reshape(-1, k)
        self.group_scale_ = np.array(gs, dtype=np.float64).reshape(-1, k)

        z = self._standardize(x, None if groups is None else np.asarray(groups)[ok])
        _, sv, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        var = sv**2 / (len(z) - 1)
        if isinstance(self.n_components, float) and 0 < self.n_components < 1:
            total = var.sum()  # 0 when the training data do not vary: one component then
            ratio = np.cumsum(var) / total if total > 0 else np.ones_like(var)
            r = int(np.searchsorted(ratio, self.n_components) + 1)
        else:
            r = int(self.n_components)
        r = max(1, min(r, k - 1))  # keep a residual space, else SPE is always 0
        self.components_ = vt[:r]
        self.explained_variance_ = np.maximum(var[:r], _MIN_STD)
        spe, t2 = self._stats(z)
        self.spe_threshold_ = float(max(np.quantile(spe, self.quantile), _MIN_STD))
        self.t2_threshold_ = float(max(np.quantile(t2, self.quantile), _MIN_STD))
        return self

    def _stats(self, z: F64) -> tuple[F64, F64]:
        # One product: [residual projector I - P'P | P' diag(1/sqrt(lambda))] -> SPE, T2.
        p = self.components_  # (r, k)
        k = p.shape[1]
        w = np.hstack([np.eye(k) - p.T @ p, p.T / np.sqrt(self.explained_variance_)])
        y = z @ w
        y *= y
        return y[:, :k].sum(axis=1), y[:, k:].sum(axis=1)

    def _check(self, X: Any) -> F64:
        check_is_fitted(self)
        x, _ = _matrix(X)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features; fitted on {self.n_features_in_}")
        return x

    def score_samples(self, X: Any, groups: Any = None) -> tuple[F64, F64]:
        """Raw (SPE, T2) per row; NaN where any feature is NaN."""
        z = self._standardize(self._check(X), groups)
        return self._stats(z)

    def decision_function(self, X: Any, groups: Any = None) -> F64:
        """max(SPE / spe_threshold_, T2 / t2_threshold_): higher = more anomalous, 1.0 = alarm."""
        spe, t2 = self.score_samples(X, groups)
        return np.maximum(spe / self.spe_threshold_, t2 / self.t2_threshold_)

    def contributions(self, X: Any, groups: Any = None) -> F64:
        """Per-metric share of each row's anomaly, (n, n_features), rows sum to 1 (NaN rows NaN).

        SPE part: squared residual per metric / SPE. T2 part: z_i x (P' diag(1/lambda) P z)_i,
        which sums to T2, with negative terms clipped and the rest renormalized. The two parts are
        blended in proportion to SPE / spe_threshold_ and T2 / t2_threshold_, so the statistic
        that raised the alarm dominates the explanation.
        """
        z = self._standardize(self._check(X), groups)
        p = self.components_
        t = z @ p.T
        resid = z - t @ p
        r2 = resid * resid
        spe = r2.sum(axis=1, keepdims=True)
        c_t2 = np.maximum(z * ((t / self.explained_variance_) @ p), 0.0)
        t2_pos = c_t2.sum(axis=1, keepdims=True)
        w_spe = spe / self.spe_threshold_
        w_t2 = np.einsum("ij,ij->i", t, t / self.explained_variance_)[:, None] / self.t2_threshold_
        with np.errstate(invalid="ignore", divide="ignore"):
            share_spe = np.where(spe > 0, r2 / spe, 1.0 / z.shape[1])
            share_t2 = np.where(t2_pos > 0, c_t2 / t2_pos, 1.0 / z.shape[1])
            total = w_spe + w_t2
            out = np.where(
                total > 0, (w_spe * share_spe + w_t2 * share_t2) / total, 1.0 / z.shape[1]
            )
        out[np.isnan(z).any(axis=1)] = np.nan
        return out
