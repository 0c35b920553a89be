"""Paired statistics for two runs over the same questions: McNemar's exact test on the discordant pairs and a
bootstrap interval of the accuracy difference (stdlib only, seeded, so a comparison is reproducible)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from math import comb


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs under H0 are Binomial(a_only + b_only, 1/2)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_diff(a: list[bool], b: list[bool], resamples: int, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of accuracy(b) - accuracy(a), resampling questions with replacement (pairs kept)."""
    n = len(a)
    if n == 0:
        return 0.0, 0.0
    rng = random.Random(seed)
    diffs = [int(y) - int(x) for x, y in zip(a, b)]
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = stats[int((1 - level) / 2 * (resamples - 1))]
    hi = stats[int((1 + level) / 2 * (resamples - 1))]
    return lo, hi


@dataclass(frozen=True)
class PairedTest:
    """The outcome of comparing B against A on paired questions."""

    n: int
    accuracy_a: float
    accuracy_b: float
    a_only: int        # right in A, wrong in B (regressions when B is the newer run)
    b_only: int        # wrong in A, right in B
    p_value: float
    ci_low: float
    ci_high: float
    verdict: str       # "B better" | "A better" | "insufficient evidence"


def paired_test(a: list[bool], b: list[bool], resamples: int, alpha: float, seed: int = 0) -> PairedTest:
    """McNemar + bootstrap; a difference is claimed only when p < alpha and the interval excludes 0."""
    if len(a) != len(b):
        raise ValueError("paired test needs the same questions in both runs")
    n = len(a)
    a_only = sum(x and not y for x, y in zip(a, b))
    b_only = sum(y and not x for x, y in zip(a, b))
    p = mcnemar_exact(a_only, b_only)
    lo, hi = bootstrap_diff(a, b, resamples, seed, 1 - alpha)
    if p < alpha and lo > 0:
        verdict = "B better"
    elif p < alpha and hi < 0:
        verdict = "A better"
    else:
        verdict = "insufficient evidence"
    return PairedTest(n, round(sum(a) / n, 4) if n else 0.0, round(sum(b) / n, 4) if n else 0.0, a_only, b_only,
                      float(f"{p:.4g}"), round(lo, 4), round(hi, 4), verdict)  # p to 4 significant digits


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95 % by default); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
