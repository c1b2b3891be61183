"""Wall time of one ablation grid with 1 and with 2 worker processes, side by side.

    python benchmarks/bench_ablation_workers.py [--grid pooling] [--seeds 1] [--profile quick] [--epochs 1]

Each setting runs the whole grid into a fresh temporary results file; workers share the
machine's CPU threads equally. Prints the wall times, the speed-up, and the median epoch
time of the runs (with 2 workers two epochs run at once, so the grid's throughput ratio is
2 x the 1-worker epoch time / the 2-worker one). For long runs the epoch ratio is the one
that counts: the wall time of a short grid also holds each run's start-up and evaluation.
Use a grid whose run count is a multiple of 2 so that no worker idles at the end.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cbam_tutorial.grids import expand_grid
from cbam_tutorial.ledger import read_records
from cbam_tutorial.runner import run_grid


def _median_epoch_seconds(results_file: Path) -> float:
    return statistics.median(epoch["epoch_seconds"] for record in read_records(results_file)
                             for epoch in record["history"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="pooling")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    runs = len(expand_grid(args.grid, args.seeds))
    seconds, epoch_seconds = {}, {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "r.jsonl"
            started = time.perf_counter()
            run_grid(args.grid, args.seeds, args.profile, out, workers=workers,
                     log=lambda *_: None, epochs=args.epochs)
            seconds[workers] = time.perf_counter() - started
            epoch_seconds[workers] = _median_epoch_seconds(out)
        print(f"{workers} worker(s): {runs} runs of grid {args.grid!r} ({args.profile}, {args.epochs} epoch(s)) "
              f"in {seconds[workers]:.1f} s; median epoch {epoch_seconds[workers]:.1f} s")
    print(f"speed-up of 2 workers over 1, whole grid: {seconds[1] / seconds[2]:.2f}x; "
          f"per epoch of training: {2 * epoch_seconds[1] / epoch_seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
