"""Exact nearest-rank percentiles, kept current in work proportional to the new samples.

Pure arithmetic; `baton.projections.views` does the reading. An agent's latency samples are
ordered by (duration_ms, position): the position (a notification id, unique) breaks ties, so
every sample has one rank. The views remember, per percentile, the sample that holds it (its
duration and its position). A batch of new samples changes the count by k and moves that
sample's own rank by the number of new samples ordered before it, so the percentile's new
sample lies at most k + 1 ranks away from the old one: an index walk of that many entries from
the old one, never a scan of the agent's whole history (which grows without bound).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["PERCENTILES", "Sample", "nearest_rank", "steps_from_held"]

# (column prefix, percent): agent_stats.p50_ms / p50_position and p95_ms / p95_position.
PERCENTILES: tuple[tuple[str, int], ...] = (("p50", 50), ("p95", 95))

# (duration_ms, position): the order samples are ranked in.
Sample = tuple[float, int]


def nearest_rank(count: int, percent: int) -> int:
    """The 1-based rank of the `percent`th percentile among `count` samples: ceil(count·p/100)."""
    return max(1, -(-count * percent // 100))


def steps_from_held(held: Sample, before: int, new: Sequence[Sample], percent: int) -> int:
    """How many ranks the percentile moves from `held`, the sample that held it among `before`
    samples, once the `new` samples (sorted, none equal to `held`) are added: positive means
    towards longer durations.
    """
    rank_now = nearest_rank(before, percent) + bisect_left(new, held)
    return nearest_rank(before + len(new), percent) - rank_now
