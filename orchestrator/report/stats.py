"""The statistics of a report, as pure functions: numbers in, frozen dataclasses out.

Nothing here reads the database or draws, so every number in ``report.json`` can be checked
against a few lines of arithmetic (tests/test_report.py recomputes each of them). The
definitions are the README's "Reports" section, word for word; change one, change both.

A value that cannot be computed (a rate over no episode, a standard error of one number) is
``None``, never 0 or NaN: a missing cell must not read as an aligned one, and NaN is not
JSON.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

Z95 = 1.96  # the normal quantile of a two-sided 95 % interval, as the SQL views use it

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with its Wilson 95 % interval; rate and bounds None when ``n`` is 0."""

    k: int
    n: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class MeanSE:
    """The mean of ``n`` values and its standard error (sample SD / sqrt(n); None below 2)."""

    n: int
    mean: float | None
    se: float | None


@dataclass(frozen=True)
class Difference:
    """``estimate`` = a - b with a 95 % interval."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Drop:
    """Mean of the control values minus mean of the threat values, with a 95 % interval
    (normal approximation, Welch standard error), as the ``sandbagging`` view computes it."""

    n_control: int
    control_mean: float | None
    n_threat: int
    threat_mean: float | None
    drop: float | None
    ci_low: float | None
    ci_high: float | None


def wilson(k: int, n: int, z: float = Z95) -> Proportion:
    """The Wilson score interval: unlike the Wald interval it stays inside [0, 1] and does
    not collapse to a point at 0 of n or n of n, which small cells often are. The ends are
    exactly 0 and 1 when no or every episode counts (the formula reaches them only up to
    rounding), as in the ``misalignment_rates`` view."""
    if n <= 0:
        return Proportion(k, 0, None, None, None)
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if k == 0 else centre - half
    high = 1.0 if k == n else centre + half
    return Proportion(k, n, p, low, high)


def mean_se(values: Sequence[float]) -> MeanSE:
    """Mean and standard error of the mean, with the sample (n - 1) standard deviation: the
    paper's error bars over cells."""
    n = len(values)
    if n == 0:
        return MeanSE(0, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return MeanSE(n, mean, None)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return MeanSE(n, mean, math.sqrt(variance / n))


def root_mean_square(values: Sequence[float]) -> float | None:
    return None if not values else math.sqrt(math.fsum(v * v for v in values) / len(values))


def rms_normalise(scores: Mapping[K, float]) -> dict[K, float]:
    """Divide each score by the root mean square of all of them (the paper's way of putting
    evaluations with different score scales on one footing: after it, a scenario's cells
    have RMS 1). Scores all 0 (no signal) normalise to 0 rather than dividing by zero."""
    rms = root_mean_square(list(scores.values()))
    if not rms:
        return dict.fromkeys(scores, 0.0)
    return {key: value / rms for key, value in scores.items()}


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> Difference:
    """p1 - p2 for two independent proportions with Newcombe's hybrid score interval (his
    method 10: the Wilson interval of each side, combined by squares). It keeps the Wilson
    interval's good behaviour at 0 % and 100 %, where the Wald interval of a difference
    shrinks to nothing; two personas that never misbehave differ by 0 with a real width."""
    a, b = wilson(k1, n1, z), wilson(k2, n2, z)
    if a.rate is None or b.rate is None:
        return Difference(None, None, None)
    assert a.ci_low is not None and a.ci_high is not None
    assert b.ci_low is not None and b.ci_high is not None
    d = a.rate - b.rate
    low = d - math.sqrt((a.rate - a.ci_low) ** 2 + (b.ci_high - b.rate) ** 2)
    high = d + math.sqrt((a.ci_high - a.rate) ** 2 + (b.rate - b.ci_low) ** 2)
    return Difference(d, low, high)


def welch_drop(control: Sequence[float], threat: Sequence[float], z: float = Z95) -> Drop:
    """Control mean minus threat mean. The interval is drop +/- z * sqrt(var_c/n_c +
    var_t/n_t) with sample variances, None until each side has two values: the same
    arithmetic as the ``sandbagging`` view (migration 0005), so the report and SQL agree."""
    c, t = mean_se(control), mean_se(threat)
    drop = None if c.mean is None or t.mean is None else c.mean - t.mean
    if drop is None or c.se is None or t.se is None:
        return Drop(c.n, c.mean, t.n, t.mean, drop, None, None)
    half = z * math.sqrt(c.se**2 + t.se**2)
    return Drop(c.n, c.mean, t.n, t.mean, drop, drop - half, drop + half)
