"""Statistics over seeds: means with intervals, paired differences, and verdicts as data
(and, for timings, medians with intervals).

    table = summarize(records)                  # one row per configuration
    for comparison in compare(table):           # one Comparison per configuration
        comparison.outcome                      # Outcome.BETTER / WORSE / WITHIN / NO_INTERVAL
        comparison.sentence()                   # the same, in words

A difference to the reference row is paired by seed: for each seed both runs started from
the same data order, so their difference measures the configuration, not the luck of the
seed. Its 95% t-interval excludes zero or it does not; that is the whole verdict.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from enum import Enum

from .grids import PAPER_TOP1_ERROR


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


_Z975 = 1.959963984540054  # the normal distribution's 97.5% quantile


def t_quantile_975(degrees_of_freedom: int) -> float:
    """Student's t quantile for a two-sided 95% interval: the table up to 30 degrees of
    freedom, beyond it the Cornish-Fisher expansion around the normal quantile (three terms,
    within 1e-5 of the exact value there; the normal's 1.96 alone would make the interval
    up to 4% too narrow at 31-60 degrees of freedom)."""
    if degrees_of_freedom < 1:
        return math.nan
    if degrees_of_freedom <= len(_T975):
        return _T975[degrees_of_freedom - 1]
    z, v = _Z975, degrees_of_freedom
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3))


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, sample standard deviation, half-width of the 95% t-interval) of `values`."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(values)
    return mean, sd, t_quantile_975(len(values) - 1) * sd / math.sqrt(len(values))


def seeds_for_half_width(sd: float, half_width: float = 0.5) -> int:
    """The fewest seeds n for which a paired 95% t-interval, t(n - 1) * sd / sqrt(n), is at
    most `half_width` wide on each side, when the per-seed differences have standard
    deviation `sd` (same unit as `half_width`, e.g. accuracy points).

    A planning figure: `sd` is itself estimated from the seeds run so far, and the interval
    of a new set of n seeds varies around this width.
    """
    if not half_width > 0:
        raise ValueError(f"half_width must be a positive number of points, got {half_width!r}")
    if not sd >= 0 or math.isinf(sd):
        raise ValueError(f"sd must be a finite standard deviation >= 0 (two seeds or more), got {sd!r}")
    # the normal approximation is a lower bound; t only widens the interval, so count up from it
    n = max(2, math.floor((_Z975 * sd / half_width) ** 2))
    while t_quantile_975(n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n


def welch_half_width(variance_a: float, n_a: int, variance_b: float, n_b: int) -> float:
    """Half-width of the 95% interval for the difference of the means of two independent
    samples (sizes n_a, n_b >= 2, sample variances given) without assuming equal variances:
    Welch's interval, its Welch-Satterthwaite degrees of freedom rounded down (the
    conservative choice, as t_quantile_975 takes whole degrees)."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"each sample needs at least 2 values for a variance, got {n_a} and {n_b}")
    a, b = variance_a / n_a, variance_b / n_b
    if a + b == 0:
        return 0.0
    dof = (a + b) ** 2 / (a ** 2 / (n_a - 1) + b ** 2 / (n_b - 1))
    return t_quantile_975(max(1, math.floor(dof))) * math.sqrt(a + b)


def median_interval(values, confidence: float = 0.95) -> tuple:
    """(median, low, high): a distribution-free interval for the median of `values` (timings).

    low and high are the k-th smallest and k-th largest values, for the largest k whose
    coverage, 1 - 2 P(Binomial(n, 1/2) < k), still reaches `confidence` (for 95%: the 6th of
    20, the 2nd of 10; with fewer than 6 values, the minimum and maximum, which cover less).
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= confidence:
        k += 1
    return statistics.median(ordered), ordered[k - 1], ordered[n - k]


def summarize(records: list[dict], metric: str = "val", baseline: str = "baseline"):
    """Per configuration: runs, mean accuracy (%), standard deviation, 95% interval, and the
    difference to the baseline with its own 95% interval (paired by seed), beside the
    paper's ImageNet top-1 error. `metric`: "val" (choices) or "test" (reporting).

    Returns a pandas DataFrame indexed by configuration name.
    """
    import pandas as pd

    if metric not in ("val", "test"):
        raise ValueError(f"unknown metric {metric!r}; choose 'val' or 'test'")
    by_config: dict[str, dict[int, float]] = {}
    for record in records:
        score = record.get(metric)
        if score is None:
            raise ValueError(f"record {record.get('key')} has no {metric} accuracy "
                             f"(runs trained on train+val have no validation score); use metric='test'")
        by_config.setdefault(record["configuration"]["name"], {})[record["seed"]] = 100 * score["accuracy"]
    base = by_config.get(baseline, {})
    rows = []
    for name, scores in by_config.items():
        mean, sd, half = mean_interval(scores.values())
        row = {"configuration": name, "runs": len(scores), "accuracy %": mean, "sd": sd,
               "95% CI low": mean - half, "95% CI high": mean + half}
        shared = sorted(set(scores) & set(base))
        if name != baseline and shared:
            diff, _, diff_half = mean_interval(scores[s] - base[s] for s in shared)
            row.update({"vs baseline": diff, "vs baseline CI low": diff - diff_half,
                        "vs baseline CI high": diff + diff_half, "paired seeds": len(shared)})
        row["paper top-1 error % (ImageNet, ResNet-50)"] = PAPER_TOP1_ERROR.get(name, math.nan)
        rows.append(row)
    columns = ["runs", "accuracy %", "sd", "95% CI low", "95% CI high", "vs baseline", "vs baseline CI low",
               "vs baseline CI high", "paired seeds", "paper top-1 error % (ImageNet, ResNet-50)"]
    return pd.DataFrame(rows).set_index("configuration").reindex(columns=columns)


class Outcome(str, Enum):
    """What a paired 95% interval says about a difference."""

    BETTER = "better beyond the seed spread"
    WORSE = "worse beyond the seed spread"
    WITHIN = "within the seed spread"
    NO_INTERVAL = "one seed: no interval"

    @property
    def resolved(self) -> bool:
        return self in (Outcome.BETTER, Outcome.WORSE)


@dataclass(frozen=True)
class Comparison:
    """A configuration's accuracy difference to a reference row, in points, with its 95%
    interval over the seeds the two share."""

    configuration: str
    reference: str
    difference: float
    low: float
    high: float
    seeds: int

    @property
    def outcome(self) -> Outcome:
        if math.isnan(self.low):
            return Outcome.NO_INTERVAL
        if self.low > 0:
            return Outcome.BETTER
        if self.high < 0:
            return Outcome.WORSE
        return Outcome.WITHIN

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def spread(self) -> float:
        """Standard deviation of the per-seed differences, recovered from the interval
        (half-width = t(seeds - 1) * spread / sqrt(seeds)); NaN with one seed."""
        if self.seeds < 2:
            return math.nan
        return self.half_width * math.sqrt(self.seeds) / t_quantile_975(self.seeds - 1)

    def seeds_for(self, half_width: float) -> int:
        """Seeds at which a difference with this spread has a 95% interval of +-`half_width`
        (see seeds_for_half_width); a planning figure, as this spread is itself estimated."""
        if self.seeds < 2:
            raise ValueError(f"{self.configuration}: one seed has no spread to plan from; run a second seed")
        return seeds_for_half_width(self.spread, half_width)

    def sentence(self) -> str:
        if self.outcome is Outcome.NO_INTERVAL:
            return (f"{self.configuration}: {self.difference:+.2f} points over {self.reference} from a single "
                    "seed; no interval, so no verdict")
        interval = f"{self.difference:+.2f} points (95% interval {self.low:+.2f} to {self.high:+.2f}, {self.seeds} seeds)"
        if self.outcome.resolved:
            direction = "better" if self.outcome is Outcome.BETTER else "worse"
            return f"{self.configuration}: {interval}; {direction} than {self.reference} beyond the seed spread"
        return (f"{self.configuration}: {interval}; within the seed spread, not distinguishable from "
                f"{self.reference}")


def compare(table, reference: str = "baseline") -> list[Comparison]:
    """A Comparison for each row of a summarize() table that has a paired difference to the
    row it was summarised against (`reference`, the `baseline` argument of summarize())."""
    comparisons = []
    for name, row in table.iterrows():
        difference = row.get("vs baseline", math.nan)
        if name == reference or difference is None or math.isnan(difference):
            continue
        comparisons.append(Comparison(name, reference, float(difference), float(row["vs baseline CI low"]),
                                      float(row["vs baseline CI high"]), int(row["paired seeds"])))
    return comparisons


def verdicts(table, reference: str = "baseline") -> dict[str, str]:
    """{configuration: sentence}, rendered from compare()."""
    return {c.configuration: c.sentence() for c in compare(table, reference)}


@dataclass(frozen=True)
class Replication:
    """One comparison measured in two independent grids (another machine, schedule or set
    of runs): the gap between the two differences, with the 95% interval of that gap.

    The two grids' runs share nothing, so the gap's interval is Welch's for two independent
    means, each grid's per-seed differences summarised by the Comparison's spread and seeds.
    It includes zero when the second grid agrees with the first within their joint spread.
    """

    first: Comparison
    second: Comparison

    def __post_init__(self) -> None:
        if (self.first.configuration, self.first.reference) != (self.second.configuration,
                                                                  self.second.reference):
            raise ValueError(f"a replication compares the same comparison twice, got {self.first.configuration!r} "
                             f"vs {self.first.reference!r} and {self.second.configuration!r} vs "
                             f"{self.second.reference!r}")

    @property
    def gap(self) -> float:
        """second difference - first difference, in points."""
        return self.second.difference - self.first.difference

    @property
    def gap_half_width(self) -> float:
        """Half-width of the gap's 95% interval; NaN when either grid has a single seed."""
        if self.first.seeds < 2 or self.second.seeds < 2:
            return math.nan
        return welch_half_width(self.first.spread ** 2, self.first.seeds,
                                self.second.spread ** 2, self.second.seeds)

    @property
    def agrees(self) -> bool:
        """The gap's interval includes zero: the grids do not disagree beyond their spread
        (which is not a proof that they measure the same difference)."""
        return abs(self.gap) <= self.gap_half_width

    @property
    def same_outcome(self) -> bool:
        """Both grids reach the same verdict (better, worse or within the seed spread)."""
        return self.first.outcome is self.second.outcome


def replicate(first: list[Comparison], second: list[Comparison]) -> list[Replication]:
    """A Replication for each comparison (configuration against its reference row) found in
    both lists, in the order of `first`."""
    by_key = {(c.configuration, c.reference): c for c in second}
    return [Replication(c, by_key[(c.configuration, c.reference)]) for c in first
            if (c.configuration, c.reference) in by_key]


@dataclass(frozen=True)
class PairingGain:
    """How much pairing by seed narrows the 95% interval of a difference (in points).

    paired: half-width of the t-interval of the per-seed differences (what compare() uses);
    unpaired: half-width of Welch's interval for the difference of the two means, as if
    the runs of the two configurations were independent (no common random numbers);
    correlation: Pearson correlation of the two configurations' scores across seeds.
    """

    configuration: str
    reference: str
    seeds: int
    paired: float
    unpaired: float
    correlation: float

    @property
    def ratio(self) -> float:
        """paired / unpaired: below 1, pairing resolves smaller differences."""
        return self.paired / self.unpaired


def pairing_gain(records: list[dict], configuration: str, reference: str = "baseline",
                 metric: str = "val") -> PairingGain:
    """Paired against unpaired interval half-widths of `configuration` - `reference` over the
    seeds both have in `records` (a grid's results; see summarize)."""
    scores: dict[str, dict[int, float]] = {configuration: {}, reference: {}}
    for record in records:
        name = record["configuration"]["name"]
        if name in scores and record.get(metric) is not None:
            scores[name][record["seed"]] = 100 * record[metric]["accuracy"]
    seeds = sorted(set(scores[configuration]) & set(scores[reference]))
    if len(seeds) < 3:
        raise ValueError(f"{configuration!r} and {reference!r} share {len(seeds)} seeds in these records; "
                         "an interval and a correlation need at least 3")
    a = [scores[configuration][s] for s in seeds]
    b = [scores[reference][s] for s in seeds]
    _, _, paired = mean_interval(x - y for x, y in zip(a, b))
    n = len(seeds)
    unpaired = welch_half_width(statistics.variance(a), n, statistics.variance(b), n)
    return PairingGain(configuration, reference, n, paired, unpaired, statistics.correlation(a, b))
