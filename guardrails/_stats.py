"""Interval arithmetic for rates, ratios and differences of binomial proportions.

Wilson score limits per group, combined by the MOVER method (Donner & Zou 2012 for the
ratio, Newcombe 1998 for the difference). Both keep close to nominal coverage at the
small counts and extreme rates where the Wald/Katz intervals fail, and need no scipy.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def z_one_sided(alpha: float) -> float:
    """The standard normal quantile with ``alpha`` in the upper tail."""
    return NormalDist().inv_cdf(1.0 - alpha)


def wilson(positives: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score limits ``(lower, upper)`` of a proportion; ``(0, 1)`` when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = positives / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_upper(num_pos: int, num_n: int, den_pos: int, den_n: int, z: float) -> float:
    """Upper confidence limit of ``p_num / p_den`` (MOVER-R with Wilson limits).

    Returns ``inf`` when the denominator's lower limit is 0 (no evidence the ratio is
    bounded), which never triggers an alert.
    """
    p1, p2 = num_pos / num_n, den_pos / den_n
    _, u1 = wilson(num_pos, num_n, z)
    l2, _ = wilson(den_pos, den_n, z)
    denominator = l2 * (2 * p2 - l2)
    if l2 <= 0.0 or denominator <= 0.0:
        return math.inf
    discriminant = (p1 * p2) ** 2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2)
    return (p1 * p2 + math.sqrt(max(0.0, discriminant))) / denominator


def difference_lower(a_pos: int, a_n: int, b_pos: int, b_n: int, z: float) -> float:
    """Lower confidence limit of ``p_a - p_b`` (Newcombe's hybrid score interval)."""
    pa, pb = a_pos / a_n, b_pos / b_n
    la, _ = wilson(a_pos, a_n, z)
    _, ub = wilson(b_pos, b_n, z)
    return (pa - pb) - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
