"""The percentile method of rollups beyond windows.EXACT_UP_TO values: a mergeable
log-bucket sketch (DDSketch's idea). (Smaller windows keep their values and report exact
percentiles; every percentile is clamped to the window's min and max: windows.py.)

Exact percentiles cannot be merged: the p95 of a week is not a function of the p95s
of its days. So each window keeps, per column, how many values fell in each bucket
of a logarithmic grid; merging windows or late events adds counts. A percentile is the
*nearest-rank* percentile of the bucketed values:

    rank k = ceil(q * n) (at least 1); the answer is value_of(bucket holding the
    k-th smallest value)

Buckets grow by GAMMA = (1 + ALPHA) / (1 - ALPHA), so value_of() is within ALPHA
(0.5%) of every value in its bucket: the reported p95 is within 0.5% of the exact
nearest-rank p95, and equal to value_of(bucket_of(exact p95)). Zero has a bucket of
its own; negative values mirror positive ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from telelake._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")


ALPHA = 0.005
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LN_GAMMA = math.log(GAMMA)
_OFFSET = 1 << 20  # keeps positive buckets > 0 and negative ones < 0
_TINY = 1e-9  # magnitudes below this count as zero


def bucket_of(value: float) -> int:
    """The bucket of one value (monotonic: a <= b implies bucket_of(a) <= bucket_of(b))."""
    if abs(value) < _TINY:
        return 0
    index = math.ceil(math.log(abs(value)) / _LN_GAMMA) + _OFFSET
    return index if value > 0 else -index


def buckets_of(values: pa.Array) -> pa.Array:
    """bucket_of() for a whole Arrow array (nulls stay null), computed by Arrow."""
    as_float = pc.cast(values, pa.float64())
    magnitude = pc.abs(as_float)
    small = pc.less(magnitude, _TINY)
    safe = pc.if_else(small, 1.0, magnitude)
    index = pc.add(pc.cast(pc.ceil(pc.divide(pc.ln(safe), _LN_GAMMA)), pa.int64()), _OFFSET)
    signed = pc.if_else(pc.less(as_float, 0), pc.negate(index), index)
    return pc.if_else(small, 0, signed)


def value_of(bucket: int) -> float:
    """The value a bucket stands for: within ALPHA of every value in it."""
    if bucket == 0:
        return 0.0
    index = abs(bucket) - _OFFSET
    value = 2 * GAMMA**index / (GAMMA + 1)
    return value if bucket > 0 else -value


def nearest_rank(q: float, n: int) -> int:
    """The 1-based rank of the q-quantile among n values, in exact arithmetic."""
    exact = Fraction(q).limit_denominator(10**6)  # 0.95 is 19/20, not 0.9499999...
    return max(1, math.ceil(exact * n))


def quantile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile of a sketch (bucket -> count); None when it is empty."""
    n = sum(counts.values())
    if n == 0:
        return None
    rank = nearest_rank(q, n)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return value_of(bucket)
    raise AssertionError("unreachable")  # pragma: no cover
