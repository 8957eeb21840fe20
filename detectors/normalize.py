"""Map normalized scores (1.0 = alarm threshold) to [0, 1] for reports and CSV files."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def to_unit_interval(score: npt.ArrayLike) -> np.ndarray:
    """1 - 2**(-score), scores clipped at 0: monotone, 0 -> 0, threshold 1.0 -> 0.5, 2.0 -> 0.75,
    inf -> 1; NaN stays NaN. Returns a float array of the input's shape (0-d for a scalar)."""
    s = np.asarray(score, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return 1.0 - np.exp2(-np.maximum(s, 0.0))
