"""Statistics over seeds: means with intervals, paired differences, and verdicts as data.

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


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (then 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t_quantile_975(degrees_of_freedom: int) -> float:
    if degrees_of_freedom < 1:
        return math.nan
    return _T975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T975) else 1.96


def mean_interval(values) -> tuple[float, float, float]:
    """(mean, sample standard deviation, half-width of the 95% t-interval) of `values`."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(values)
    return mean, sd, t_quantile_975(len(values) - 1) * sd / math.sqrt(len(values))


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
