"""How far the fast recipe climbs with more epochs: its ceiling on the data copy it trains on.

    python benchmarks/epochs_ceiling.py results/epochs-ceiling-gpu.jsonl

Reads the records of runs made by, for each number of epochs E,

    python -m cbam_tutorial ablate --grid headline --only 'cbam avg+max k=7' --profile cpu \
        --epochs E --seeds 3 --out FILE

(benchmarks/gpu_session.sh makes them with CEILING_EPOCHS="13 20 30 40"). Each E is its own
run, not a point on a longer run's curve: the learning-rate schedule and the lookahead are
spread over the epochs a run is given. Prints a Markdown table per configuration: E, seeds,
mean test accuracy, its standard deviation and 95% t-interval, the median training seconds,
and the gain over the fewest epochs, paired by seed, with its interval. The `cpu` profile
trains on all 50,000 training images, so only the test set scores these runs.

Why: issue 12 asks for 93% test accuracy within a 10-minute budget (13 epochs on the
machines it names). Where the recipe's accuracy levels off with many more epochs tells how
much of the shortfall is the budget and how much the network, recipe and data copy.
"""
from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from cbam_tutorial.comparison import mean_interval
from cbam_tutorial.ledger import read_records


def by_epochs(records: list[dict]) -> dict[str, dict[int, dict[int, dict]]]:
    """{configuration: {epochs: {seed: record}}} from a results file's records."""
    table: dict = defaultdict(lambda: defaultdict(dict))
    for record in records:
        epochs = record["config"]["profile"]["epochs"]
        table[record["configuration"]["name"]][epochs][record["seed"]] = record
    return table


def ceiling_table(records: list[dict]) -> list[str]:
    """Markdown lines: one table per configuration, one row per number of epochs."""
    lines = []
    for name, runs in by_epochs(records).items():
        fewest = min(runs)
        lines += [f"{name}: test accuracy (%) by the number of epochs a run is given; the gain is "
                  f"paired by seed with the {fewest}-epoch runs, 95% t-intervals", "",
                  "| epochs | seeds | mean | sd | 95% interval | median training seconds | gain | 95% interval |",
                  "|---|---|---|---|---|---|---|---|"]
        for epochs in sorted(runs):
            seeds = runs[epochs]
            accuracy = [100 * seeds[s]["test"]["accuracy"] for s in sorted(seeds)]
            mean, sd, half = mean_interval(accuracy)
            seconds = statistics.median(r["train_seconds"] for r in seeds.values())
            spread = f"{sd:.2f} | {mean - half:.2f} to {mean + half:.2f}" if len(seeds) >= 2 else " | "
            row = f"| {epochs} | {len(seeds)} | {mean:.2f} | {spread} | {seconds:,.0f} |"
            shared = sorted(set(seeds) & set(runs[fewest]))
            if epochs != fewest and len(shared) >= 2:
                gains = [100 * (seeds[s]["test"]["accuracy"] - runs[fewest][s]["test"]["accuracy"]) for s in shared]
                gain, _, gain_half = mean_interval(gains)
                row += f" {gain:+.2f} | {gain - gain_half:+.2f} to {gain + gain_half:+.2f} |"
            else:
                row += " | |"
            lines.append(row)
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the runs' JSON-lines results file")
    args = parser.parse_args()
    records = read_records(args.results)
    if not records:
        raise SystemExit(f"{args.results} holds no runs yet; the command that makes them is in this "
                         "script's help")
    print("\n".join(ceiling_table(records)))


if __name__ == "__main__":
    main()
