"""The paper's ablations as experiment grids: which configurations, with which seeds.

    runs = expand_grid("pooling", seeds=3)       # [(Config, seed), ...]
    more = expand_grid("all", seeds=8, only=["baseline", "cbam avg+max k=7"])

Grids, one per table of Woo et al. (2018); every grid includes the baseline, so that each
configuration's difference to it can be estimated:

- "pooling" (Table 1): channel attention only, with avg, max or avg+max pooling;
- "spatial" (Table 2): channel + spatial attention, the spatial gate pooling with avg&max
  or a learned 1x1 convolution, kernel size 3 or 7;
- "arrangement" (Table 3): channel-spatial, spatial-channel and parallel CBAM, and SE;
- "headline": the baseline, SE and CBAM (channel-spatial, avg&max, k = 7), the book's
  headline comparison, which is also part of "all";
- "all": the union of the three tables, each configuration once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
GRIDS["headline"] = (BASELINE, SE, _ARRANGEMENTS["channel-spatial"])

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


def expand_grid(grid: str, seeds, only=None) -> list[tuple[Config, int]]:
    """Every (configuration, seed) run of `grid`, seed by seed (every configuration of the
    first seed, in the grid's order, then the next seed), so that a grid stopped part way
    already holds complete sets of paired runs.

    only: names of some of the grid's configurations (e.g. ["baseline", "cbam avg+max k=7"])
    to keep, in the grid's order; None keeps them all. It serves to give more seeds to the
    comparisons whose intervals are still wide, without rerunning the others.
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(map(repr, GRIDS))}")
    configs = GRIDS[grid]
    if only is not None:
        if isinstance(only, str):
            only = [only]
        names = [config.name for config in configs]
        unknown = [name for name in only if name not in names]
        if not only or unknown:
            raise ValueError(f"only must name configurations of the {grid!r} grid, got "
                             f"{', '.join(map(repr, unknown)) if unknown else 'none'}; "
                             f"its configurations: {', '.join(map(repr, names))}")
        configs = tuple(config for config in configs if config.name in only)
    return [(config, seed) for seed in _seed_list(seeds) for config in configs]


def grid_records(records: list[dict], grid: str) -> list[dict]:
    """The records whose configuration belongs to `grid` (e.g. the pooling rows of "all")."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {', '.join(map(repr, GRIDS))}")
    names = {config.name for config in GRIDS[grid]}
    return [record for record in records if record["configuration"]["name"] in names]


# The paper's own reference row in each table: what each of its ablations changes from.
PAPER_REFERENCE_ROWS = {"pooling": "cam avg", "spatial": "cam avg+max", "arrangement": "cbam avg+max k=7"}
PAPER_TABLES = {"pooling": paper.CHANNEL_POOLING, "spatial": paper.SPATIAL, "arrangement": paper.ARRANGEMENT}
