"""Welch's t-test for two recipes' per-seed scores, with no dependency beyond the standard library.

The results page judges "recipe A beats recipe B" from three seeds a side. A difference of one
seed spread is easily chance at that count; Welch's test (unequal variances) gives the
probability of a difference at least that large if the recipes were the same, and the page
calls a difference shown only below :data:`ALPHA`.

The two-sided p-value of Student's t with ``df`` degrees of freedom is the regularized
incomplete beta function ``I_x(df / 2, 1 / 2)`` at ``x = df / (df + t^2)``, evaluated by its
continued fraction (modified Lentz).
"""

from __future__ import annotations

from collections.abc import Sequence
import math
import statistics
from typing import NamedTuple

#: A difference is called shown when Welch's two-sided p-value is below this.
ALPHA = 0.05


class Welch(NamedTuple):
    """Welch's t-test of two samples."""

    diff: float
    """mean(a) - mean(b)."""
    t: float
    df: float
    """Welch-Satterthwaite degrees of freedom."""
    p: float
    """Two-sided p-value."""


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (converges for x < (a+1)/(a+b+2))."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's t-test of ``a`` against ``b``; None under 2 values a side or when both have no
    spread at all (every seed scored the same: there is no variance to test against)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0.0:
        return None
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Welch(diff, t, df, t_two_sided_p(t, df))
