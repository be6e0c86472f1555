"""The Pareto front of a multi-objective search (``search.objectives``)."""
from __future__ import annotations

from collections.abc import Sequence


def pareto_indices(points: Sequence[Sequence[float]], maximise: bool = True) -> list[int]:
    """Indices of the points no other point dominates (at least as good in every objective and
    better in one); equal points are all kept."""
    sign = 1 if maximise else -1

    def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(sign * x >= sign * y for x, y in zip(a, b)) and any(
            sign * x > sign * y for x, y in zip(a, b))

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
