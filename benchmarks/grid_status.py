"""The status of a grid that is still being run, as Markdown for results/README.md.

    python benchmarks/grid_status.py results/ablation-all-cpu-15ep.jsonl --grid all --seeds 5
    python benchmarks/grid_status.py results/ablation-all-cpu-15ep.jsonl --grid all --seeds 5 \
        --readme results/README.md

Prints how many of the grid's runs the file holds, every run's validation accuracy by seed,
and, once the baseline has two seeds, each configuration's mean, standard deviation and 95%
interval with the paired difference to the baseline (same seeds) and its half-width; the
same for the test accuracy of the headline comparison (baseline, SE, CBAM) only, since the
test set is kept for that comparison and no choice is made on it. With --readme it replaces
the text between the two marker lines

    <!-- grid status: FILE -->
    <!-- end of grid status -->

in that file (FILE as given on the command line), so that the README shows the file as it is.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from cbam_tutorial.comparison import summarize
from cbam_tutorial.grids import GRIDS, expand_grid
from cbam_tutorial.ledger import read_records

END_MARKER = "<!-- end of grid status -->"


def accuracies(records: list[dict], metric: str) -> dict[str, dict[int, float]]:
    """{configuration: {seed: accuracy in %}} for `metric` ("val" or "test")."""
    table: dict[str, dict[int, float]] = {}
    for record in records:
        table.setdefault(record["configuration"]["name"], {})[record["seed"]] = 100 * record[metric]["accuracy"]
    return table


def interval_table(records: list[dict], names: list[str], metric: str) -> list[str]:
    """Markdown rows from comparison.summarize: mean, sd and 95% interval of each name with two
    seeds or more, and the paired difference to the baseline over two or more shared seeds."""
    summary = summarize([r for r in records if r["configuration"]["name"] in names], metric)
    split = {"val": "Validation", "test": "Test"}[metric]
    lines = [textwrap.fill(f"{split} accuracy (%) over the seeds run so far, and the paired difference "
                           "to the baseline over the seeds both have; 95% t-intervals:", 92), "",
             "| configuration | seeds | mean | sd | 95% interval | vs baseline | 95% interval | half-width |",
             "|---|---|---|---|---|---|---|---|"]
    for name in (n for n in names if n in summary.index and summary.at[n, "runs"] >= 2):
        row = summary.loc[name]
        line = (f"| {name} | {row['runs']:.0f} | {row['accuracy %']:.2f} | {row['sd']:.2f} | "
                f"{row['95% CI low']:.2f} to {row['95% CI high']:.2f} |")
        if name == "baseline":
            line += " reference | | |"
        elif row["paired seeds"] >= 2:
            low, high = row["vs baseline CI low"], row["vs baseline CI high"]
            line += f" {row['vs baseline']:+.2f} | {low:+.2f} to {high:+.2f} | {(high - low) / 2:.2f} |"
        else:
            line += " | | |"
        lines.append(line)
    return lines


def by_seed_table(scores: dict[str, dict[int, float]], names: list[str], seeds: list[int]) -> list[str]:
    """Markdown rows: one per name, one column per seed."""
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for name in (n for n in names if n in scores):
        lines.append(f"| {name} | " + " | ".join(f"{scores[name][s]:.2f}" if s in scores[name] else ""
                                                 for s in seeds) + " |")
    return lines


def status(records: list[dict], grid: str, seeds: int) -> str:
    """The grid's progress; validation accuracy for every configuration, and test accuracy for
    the headline comparison only (baseline, SE, CBAM), the one the test set is kept for."""
    planned = expand_grid(grid, seeds)
    order = list(dict.fromkeys(config.name for config, _ in planned))
    headline = [config.name for config in GRIDS["headline"] if config.name in order]
    val, test = accuracies(records, "val"), accuracies(records, "test")
    seen = sorted({record["seed"] for record in records})
    complete = [s for s in seen if all(s in val.get(name, {}) for name in order)]
    started = [s for s in seen if s not in complete]
    dates = sorted(record["provenance"]["date"][:10] for record in records)
    head = (f"**Runs in the file: {len(records)} of {len(planned)}** (written {dates[0]} to {dates[-1]}; "
            f"seeds complete: {', '.join(map(str, complete)) or 'none'}"
            + (f"; begun: {', '.join(map(str, started))}" if started else "") + ").")
    lines = [textwrap.fill(head, 92), "Validation accuracy (%) of each run:", "",
             *by_seed_table(val, order, seen), ""]
    if len(val.get("baseline", {})) < 2:
        lines.append(textwrap.fill(
            "One seed of the baseline gives no interval, so there is no table of means and differences "
            "yet: a configuration's interval needs at least two seeds, and its paired difference the same "
            "seeds of the baseline.", 92))
    else:
        lines += interval_table(records, order, "val")
    if headline:
        lines += ["", "Test accuracy (%) of the headline comparison, the only one the test set is "
                  "reported for:", "", *by_seed_table(test, headline, seen)]
        if len(test.get("baseline", {})) >= 2:
            lines += ["", *interval_table(records, headline, "test")]
    return "\n".join(lines)


def replace_block(readme: Path, results: str, text: str) -> None:
    start_marker = f"<!-- grid status: {results} -->"
    content = readme.read_text()
    if content.count(start_marker) != 1 or END_MARKER not in content.split(start_marker, 1)[1]:
        raise SystemExit(f"{readme} needs one line {start_marker!r} followed later by {END_MARKER!r}")
    before, rest = content.split(start_marker, 1)
    after = rest.split(END_MARKER, 1)[1]
    readme.write_text(f"{before}{start_marker}\n{text}\n{END_MARKER}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="the grid's JSON-lines results file")
    parser.add_argument("--grid", required=True, help="the grid's name, as given to ablate --grid")
    parser.add_argument("--seeds", type=int, required=True, help="the seeds the grid will have")
    parser.add_argument("--readme", type=Path, help="write the status into this file's marked block")
    args = parser.parse_args()
    text = status(read_records(Path(args.results)), args.grid, args.seeds)
    if args.readme:
        replace_block(args.readme, args.results, text)
    print(text)


if __name__ == "__main__":
    main()
