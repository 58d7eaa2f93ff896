"""Paired differences across seeds: mean, Student-t 95% interval and two-sided p.

Why paired: at a given seed every row of a reproduced table sees the same data order and the
same attack random starts (and starts from the same initial weights where its architecture is
the dense row's), so the per-seed difference (row - dense) cancels what the seed does to both; its spread, not the two rows' separate spreads,
says whether a difference is resolved. Pure Python (``math`` only): ``launch.report`` reads it
without TensorFlow or SciPy; the tests check it against hand math and ``scipy.stats``.
"""
import math

MIN_PAIRS = 2


def _betacf(a, b, x):
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x}).")


def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x!r}.")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                 + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t, df):
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df!r}.")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(q, df):
    """The ``q`` quantile (0.5 < q < 1) of Student's t, by bisection on the exact CDF."""
    if not 0.5 < q < 1.0:
        raise ValueError(f"q must be in (0.5, 1), got {q!r}.")
    target = 2.0 * (1.0 - q)  # the two-sided tail mass at the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def paired_difference(row, reference, confidence=0.95):
    """Statistics of ``row[seed] - reference[seed]`` over the seeds both have.

    Args:
      row, reference: ``{seed: value}``; seeds missing from either, or values that are None or
        NaN, are left out.
      confidence: of the two-sided Student-t interval.
    Returns:
      ``{"n", "mean", "sd", "low", "high", "p", "seeds"}``; with fewer than 2 pairs ``sd``,
      ``low``, ``high`` and ``p`` are None (no interval can be estimated). A zero spread gives
      the degenerate interval [mean, mean] and p 0 (or 1 when the mean is 0 too).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")

    def ok(v):
        return v is not None and not math.isnan(float(v))

    seeds = sorted(s for s in row if s in reference and ok(row[s]) and ok(reference[s]))
    diffs = [float(row[s]) - float(reference[s]) for s in seeds]
    n = len(diffs)
    out = {"n": n, "mean": None, "sd": None, "low": None, "high": None, "p": None,
           "seeds": seeds}
    if n == 0:
        return out
    mean = sum(diffs) / n
    out["mean"] = mean
    if n < MIN_PAIRS:
        return out
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    if se == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = t_two_sided_p(mean / se, n - 1)
    out.update(sd=sd, low=mean - half, high=mean + half, p=p)
    return out


def resolved(stats):
    """True when the interval excludes 0 (the only claim RESULTS.md's reading makes)."""
    return stats.get("low") is not None and (stats["low"] > 0 or stats["high"] < 0)
