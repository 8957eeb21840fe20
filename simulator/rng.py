"""Counter-based randomness: every draw is a hash of (seed, stream, keys), never generator state.

A value then depends only on which (device, metric, time) it belongs to, not on the window a
caller asked for or the order blocks are computed in; that is what makes simulate() split-proof.
The hash is splitmix64's finalizer, folded over the keys, in wrapping uint64 arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import IntEnum

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


class Stream(IntEnum):
    """One tag per independent random quantity; kept in one place so no two collide."""

    NOISE = 1
    SMOOTH_OCCUPANCY = 2
    SMOOTH_OCCUPANCY_FAST = 3
    SMOOTH_CO2 = 4
    SMOOTH_TEMPERATURE = 5
    SMOOTH_HUMIDITY = 6
    CAPACITY = 7
    OFFSET_CO2 = 8
    OFFSET_TEMPERATURE = 9
    OFFSET_HUMIDITY = 10
    EVENT = 20
    EVENT_START = 21
    EVENT_DURATION = 22
    EVENT_MAGNITUDE = 23
    EVENT_METRIC = 24
    NOISE_BURST = 25
    READING = 30
    FAULT_PARAM = 31


def _mix_int(x: int) -> int:
    x &= _MASK
    x = ((x ^ (x >> 30)) * _M1) & _MASK
    x = ((x ^ (x >> 27)) * _M2) & _MASK
    return x ^ (x >> 31)


# Elements per step of the elementwise chains below (mix, normal): their intermediates then
# stay in the CPU cache instead of streaming a multi-MB array through memory once per
# operation (mixing a million hashes: ~3x faster). A multiple of 64, so chunks start
# vector-aligned like the whole array and every element takes the same code path: same bits.
_CHUNK = 1 << 15


def _chunks(n: int) -> Iterator[slice]:
    return (slice(i, i + _CHUNK) for i in range(0, n, _CHUNK))


def _mix(z: U64) -> U64:
    # In place on a fresh (so contiguous) array: the caller's arrays are never touched.
    flat = z.reshape(-1)
    for part in _chunks(flat.size):
        _mix_chunk(flat[part])
    return z


def _mix_chunk(z: U64) -> None:
    z ^= z >> np.uint64(30)
    z *= np.uint64(_M1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_M2)
    z ^= z >> np.uint64(31)


def hash64(seed: int, stream: int, *keys: npt.ArrayLike) -> U64:
    """Hash (seed, stream, *keys) elementwise; keys broadcast like numpy operands.

    Keys are integers (negative ones wrap). Folding key by key lets a small key (a device column)
    be mixed once and broadcast, so a (devices x ticks) grid costs one full-size mix per key.
    """
    h = np.array([_mix_int(_mix_int(seed) ^ ((int(stream) * _GOLDEN) & _MASK))], dtype=np.uint64)
    for key in keys:
        k = np.array(key, dtype=np.int64, ndmin=1).astype(np.uint64)
        k *= np.uint64(_GOLDEN)
        h = _mix(k ^ h)
    return h


def uniform(h: U64) -> F64:
    """Uniform [0, 1) from the top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def normal(h: U64) -> F64:
    """Standard normal by Box-Muller, one hash per draw (32 bits for each uniform):
    sqrt(-2 ln u1) x cos(2 pi u2), u1 = (hi32 + 0.5) / 2^32, u2 = lo32 / 2^32.

    White noise on every reading is the simulator's largest cost, so this runs chunk by chunk
    and in place: the same operations in the same order as the formula, so the same bits.
    """
    out = np.empty(np.shape(h))
    flat_h, flat_out = np.ravel(h), out.reshape(-1)
    for part in _chunks(flat_h.size):
        _normal_chunk(flat_h[part], flat_out[part])
    return out


def _normal_chunk(h: U64, out: F64) -> None:
    radius = (h >> np.uint64(32)).astype(np.float64)
    radius += 0.5
    radius *= 2.0**-32
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = (h & np.uint64(0xFFFFFFFF)).astype(np.float64)
    angle *= 2.0**-32
    angle *= 2.0 * np.pi
    np.cos(angle, out=angle)
    np.multiply(radius, angle, out=out)
