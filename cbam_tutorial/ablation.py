"""The ablations in one import: grids, the resumable runner, its results file, statistics.

    run_grid("pooling", seeds=3, profile="ablation", out="results/pooling.jsonl")
    table = summarize(read_records("results/pooling.jsonl"))

The parts live in their own modules: grids.py (which configurations), runner.py (running
them), ledger.py (the results file) and, here, the statistics over seeds.
"""
from __future__ import annotations

import math
import statistics

from .grids import BASELINE, GRIDS, PAPER_TOP1_ERROR, SE, Config, expand_grid, grid_records  # noqa: F401
from .ledger import append_record, read_ledger, read_records, record_key, run_key  # noqa: F401
from .runner import GridFailures, _train_one, run_grid  # noqa: F401


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
                        "vs baseline CI high": diff + diff_half})
        row["paper top-1 error % (ImageNet, ResNet-50)"] = PAPER_TOP1_ERROR.get(name, math.nan)
        rows.append(row)
    columns = ["runs", "accuracy %", "sd", "95% CI low", "95% CI high", "vs baseline", "vs baseline CI low",
               "vs baseline CI high", "paper top-1 error % (ImageNet, ResNet-50)"]
    return pd.DataFrame(rows).set_index("configuration").reindex(columns=columns)


def verdicts(table, reference: str = "baseline") -> dict[str, str]:
    """One plain sentence per configuration: is its difference to the reference row (the
    `baseline` that summarize() compared with) larger than the spread over seeds (its 95%
    interval excludes zero) or not?"""
    sentences = {}
    for name, row in table.iterrows():
        if name == reference or math.isnan(row.get("vs baseline", math.nan)):
            continue
        diff, low, high = row["vs baseline"], row["vs baseline CI low"], row["vs baseline CI high"]
        if math.isnan(low):
            sentences[name] = (f"{name}: {diff:+.2f} points over {reference} from a single seed; "
                               "no interval, so no verdict")
        elif low > 0 or high < 0:
            direction = "better" if diff > 0 else "worse"
            sentences[name] = (f"{name}: {diff:+.2f} points (95% interval {low:+.2f} to {high:+.2f}); "
                               f"{direction} than {reference} beyond the seed spread")
        else:
            sentences[name] = (f"{name}: {diff:+.2f} points (95% interval {low:+.2f} to {high:+.2f}); "
                               f"within the seed spread, not distinguishable from {reference}")
    return sentences
