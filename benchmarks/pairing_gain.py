"""How much common random numbers narrow the intervals of a grid's differences.

    python benchmarks/pairing_gain.py results/crn-arrangement-quick.jsonl

For every configuration of the results file against the baseline: the half-width of the
paired 95% interval (per-seed differences; the runs of one seed share initial backbone
weights, data order and augmentation) against the half-width of Welch's interval for the
same difference treated as unpaired, and the correlation of the two across seeds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cbam_tutorial.comparison import pairing_gain
from cbam_tutorial.ledger import read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a grid's JSON-lines results file")
    parser.add_argument("--metric", choices=("val", "test"), default="val")
    parser.add_argument("--reference", default="baseline")
    args = parser.parse_args()
    records = read_records(args.results)
    names = sorted({r["configuration"]["name"] for r in records} - {args.reference})
    print(f"{'configuration':28s} seeds  paired +-  unpaired +-  ratio  correlation")
    for name in names:
        gain = pairing_gain(records, name, args.reference, args.metric)
        print(f"{name:28s} {gain.seeds:5d}  {gain.paired:9.2f}  {gain.unpaired:11.2f}  "
              f"{gain.ratio:5.2f}  {gain.correlation:11.2f}")


if __name__ == "__main__":
    main()
