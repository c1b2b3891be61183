"""The paper's ablations as experiment grids: expand, run (resumably, in parallel), summarise.

    runs = expand_grid("pooling", seeds=3)                  # [(Config, seed), ...]
    run_grid("pooling", seeds=3, profile="quick", out="results/pooling-quick.jsonl")
    table = summarize(read_records("results/pooling-quick.jsonl"))

Grids, one per table of Woo et al. (2018); every grid includes the baseline, so that each
configuration's difference to it can be estimated:

- "pooling" (Table 1): channel attention only, with avg, max or avg+max pooling;
- "spatial" (Table 2): channel + spatial attention, the spatial gate pooling with avg&max
  or a learned 1x1 convolution, kernel size 3 or 7;
- "arrangement" (Table 3): channel-spatial, spatial-channel and parallel CBAM, and SE;
- "all": the union, each configuration once.

Results go to a JSON-lines file, one record per (configuration, seed) run. A record is
added by rewriting the file to a temporary name and renaming it over the old one, so an
interrupted grid never leaves a torn record, and a rerun skips every completed run.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import paper


@dataclass(frozen=True)
class Config:
    """One configuration of a grid: a name, the attention and its options."""

    name: str
    attention: str | None
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return self.name


BASELINE = Config("baseline", None)
_CAM = {pooling: Config(f"cam {pooling}", "cam", {"pooling": pooling}) for pooling in ("avg", "max", "avg+max")}
_SPATIAL = {
    (pooling, k): Config(f"cbam {pooling} k={k}", "cbam", {"spatial_pooling": pooling, "kernel_size": k})
    for pooling in ("avg+max", "conv1x1") for k in (3, 7)
}
_ARRANGEMENTS = {
    # channel-spatial with avg&max and k = 7 is also the spatial grid's "cbam avg+max k=7"
    "channel-spatial": _SPATIAL[("avg+max", 7)],
    "spatial-channel": Config("cbam spatial-channel", "cbam", {"arrangement": "spatial-channel"}),
    "parallel": Config("cbam parallel", "cbam", {"arrangement": "parallel"}),
}
SE = Config("se", "se")

GRIDS = {
    "pooling": (BASELINE, *_CAM.values()),
    "spatial": (BASELINE, *_SPATIAL.values()),
    "arrangement": (BASELINE, SE, *_ARRANGEMENTS.values()),
}
GRIDS["all"] = tuple({c.name: c for grid in list(GRIDS.values()) for c in grid}.values())

# The paper's row for each configuration (ImageNet-1K ResNet-50 top-1 error, %), for display.
PAPER_TOP1_ERROR = {
    "baseline": paper.CHANNEL_POOLING["baseline"]["top1"],
    "cam avg": paper.CHANNEL_POOLING["avg (SE)"]["top1"],
    "cam max": paper.CHANNEL_POOLING["max"]["top1"],
    "cam avg+max": paper.CHANNEL_POOLING["avg+max"]["top1"],
    "se": paper.ARRANGEMENT["SE"]["top1"],
    **{f"cbam {pooling} k={k}": paper.SPATIAL[f"{pooling}, k={k}"]["top1"]
       for pooling in ("avg+max", "conv1x1") for k in (3, 7)},
    "cbam spatial-channel": paper.ARRANGEMENT["spatial-channel"]["top1"],
    "cbam parallel": paper.ARRANGEMENT["parallel"]["top1"],
}


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a positive count or a list of distinct non-negative integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be at least 1 (a count of seeds 0..N-1), got {seeds}")
        return list(range(seeds))
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a positive count or a list of distinct non-negative integers, got {seeds!r}")
    return seeds


def expand_grid(grid: str, seeds) -> list[tuple[Config, int]]:
    """Every (configuration, seed) run of `grid`, configurations in the grid's order."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(map(repr, GRIDS))}")
    return [(config, seed) for config in GRIDS[grid] for seed in _seed_list(seeds)]


def run_key(config_name: str, seed: int, profile: str) -> str:
    return f"{profile}/{config_name}/seed={seed}"


def read_records(path: str | Path) -> list[dict]:
    """All records of a results file (an absent file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}, is not a complete JSON record ({error}); "
                                 f"this file was not written by the ablation runner") from error
    return records


def append_record(path: str | Path, record: dict) -> None:
    """Add one record: write old records plus the new one to a temporary file, then rename.

    The rename is atomic, so a reader (or a crash) sees either the old file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(old + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _train_one(config: Config, seed: int, profile: str, threads: int | None, overrides: dict) -> dict:
    """One run in a worker process: train and return a plain record."""
    import torch

    from .train import train

    if threads:
        torch.set_num_threads(threads)
    result = train(attention=config.attention, profile=profile, seed=seed, progress=False,
                   attention_options=config.options, **overrides)
    result.pop("model")
    # "config" stays the training settings; the grid's configuration is kept beside it
    return {**result, "key": run_key(config.name, seed, profile), "configuration": asdict(config),
            "seed": seed, "profile": profile}


def run_grid(grid: str, seeds, profile: str, out: str | Path, workers: int = 1,
             trainer=_train_one, log=print, **overrides) -> list[dict]:
    """Run every missing (configuration, seed) of `grid` and append its record to `out`.

    workers > 1 spreads the runs over that many processes, each with an equal share of
    the CPU threads. Runs already in `out` (same profile, configuration and seed) are
    skipped, so an interrupted grid resumes where it stopped. Returns the file's records.
    """
    from .train import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(map(repr, PROFILES))}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    runs = expand_grid(grid, seeds)
    done = {record["key"] for record in read_records(out)}
    todo = [(config, seed) for config, seed in runs if run_key(config.name, seed, profile) not in done]
    log(f"{grid}: {len(runs)} runs, {len(runs) - len(todo)} already in {out}, {len(todo)} to do")
    if workers == 1:
        for config, seed in todo:
            append_record(out, trainer(config, seed, profile, None, overrides))
            log(f"  done {run_key(config.name, seed, profile)}")
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(trainer, config, seed, profile, threads, overrides): (config, seed)
                       for config, seed in todo}
            for future in as_completed(futures):
                config, seed = futures[future]
                append_record(out, future.result())  # only this process writes the file
                log(f"  done {run_key(config.name, seed, profile)}")
    return read_records(out)


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


def grid_records(records: list[dict], grid: str) -> list[dict]:
    """The records whose configuration belongs to `grid` (e.g. the pooling rows of "all")."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(map(repr, GRIDS))}")
    names = {config.name for config in GRIDS[grid]}
    return [record for record in records if record["configuration"]["name"] in names]


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
