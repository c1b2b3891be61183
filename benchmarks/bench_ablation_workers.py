"""Wall time of one ablation grid with 1 and with 2 worker processes, side by side.

    python benchmarks/bench_ablation_workers.py [--grid pooling] [--seeds 1] [--profile quick] [--epochs 1]

Each setting runs the whole grid into a fresh temporary results file; workers share the
machine's CPU threads equally. Prints the wall times and the speed-up.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cbam_tutorial.grids import expand_grid
from cbam_tutorial.runner import run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="pooling")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    runs = len(expand_grid(args.grid, args.seeds))
    seconds = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            run_grid(args.grid, args.seeds, args.profile, Path(folder) / "r.jsonl", workers=workers,
                     log=lambda *_: None, epochs=args.epochs)
            seconds[workers] = time.perf_counter() - started
        print(f"{workers} worker(s): {runs} runs of grid {args.grid!r} ({args.profile}, {args.epochs} epoch(s)) "
              f"in {seconds[workers]:.1f} s")
    print(f"speed-up of 2 workers over 1: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
