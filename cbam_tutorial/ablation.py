"""The ablations in one import: grids, the resumable runner, its results file, statistics.

    run_grid("pooling", seeds=3, profile="ablation", out="results/pooling.jsonl")
    table = summarize(read_records("results/pooling.jsonl"))
    comparisons = compare(table)

The parts live in their own modules: grids.py (which configurations), runner.py (running
them), ledger.py (the results file) and comparison.py (statistics over seeds).
"""
from .comparison import Comparison, Outcome, compare, mean_interval, summarize, t_quantile_975, verdicts  # noqa: F401
from .grids import BASELINE, GRIDS, PAPER_TOP1_ERROR, SE, Config, expand_grid, grid_records  # noqa: F401
from .ledger import append_record, read_ledger, read_records, record_key, run_key  # noqa: F401
from .runner import GridFailures, _train_one, run_grid  # noqa: F401
