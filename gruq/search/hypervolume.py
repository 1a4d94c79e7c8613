"""Exact 2-D hypervolume of an (accuracy, cost) front, normalised to [0, 1].

The reference point is fixed per task and objective: accuracy 0 and the cost
of the all-8-bit model. With cost divided by that reference, the dominated
region lies in the unit square, so runs of one task compare directly.
"""

from __future__ import annotations

from collections.abc import Iterable


def hypervolume(points: Iterable[tuple[float, float]], ref_cost: float) -> float:
    """Area dominated by `points` (accuracy to maximise, cost to minimise) up to (0, ref_cost).

    Sweep by increasing cost: each point adds the strip from its cost to the
    next point's, at the best accuracy reached so far. Points outside the box
    (cost above the reference, accuracy below 0) add nothing.
    """
    pts = sorted((c / ref_cost, a) for a, c in points if c <= ref_cost and a > 0)
    area, best = 0.0, 0.0
    for i, (x, acc) in enumerate(pts):
        best = max(best, min(acc, 1.0))
        next_x = pts[i + 1][0] if i + 1 < len(pts) else 1.0
        area += (next_x - x) * best
    return area
