"""The status of a grid that is still being run, as Markdown for results/README.md.

    python benchmarks/grid_status.py results/ablation-all-cpu-15ep.jsonl --grid all --seeds 6
    python benchmarks/grid_status.py results/ablation-all-cpu-15ep.jsonl --grid all --seeds 6 \
        --readme results/README.md

Prints how many of the grid's runs the file holds, every run's validation accuracy by seed,
and, once the baseline has two seeds, each configuration's mean, standard deviation and 95%
interval with the paired difference to the baseline (same seeds), its half-width and the
seeds that difference's spread would need for a half-width of 0.5 points; the same for the
test accuracy of the headline comparison (baseline, SE, CBAM) only, since the test set is
kept for that comparison and no choice is made on it. Then what reaching 0.5 points
everywhere would cost: the paired standard deviations pooled over the configurations, the
seeds they ask for, the runs beyond the planned seeds and their machine time at the file's
median run; and the cheaper way, where a few comparisons are still wide: the seeds each of
those asks for by its own spread, the runs that gives only their configurations, and the
`ablate --only` commands that run them (runs beyond the plan are counted apart). Last,
each of the paper's three tables that the grid holds, against the paper's own reference row
of that table (e.g. max pooling against average pooling), paired by seed, beside the paper's
ImageNet difference. With --readme it replaces the text between the two marker lines

    <!-- grid status: FILE -->
    <!-- end of grid status -->

in that file (FILE as given on the command line), so that the README shows the file as it is.
"""
from __future__ import annotations

import argparse
import math
import statistics
import textwrap
from pathlib import Path

from cbam_tutorial.book.report import ablation_report
from cbam_tutorial.comparison import compare, seeds_for_half_width, summarize
from cbam_tutorial.grids import GRIDS, PAPER_REFERENCE_ROWS, PAPER_TOP1_ERROR, expand_grid
from cbam_tutorial.ledger import read_records

END_MARKER = "<!-- end of grid status -->"
TARGET_HALF_WIDTH = 0.5  # points: issue 13's bar for a resolved paired difference
MACHINE_CORES = 2  # the development machines the CPU grids run on


def accuracies(records: list[dict], metric: str) -> dict[str, dict[int, float]]:
    """{configuration: {seed: accuracy in %}} for `metric` ("val" or "test")."""
    table: dict[str, dict[int, float]] = {}
    for record in records:
        table.setdefault(record["configuration"]["name"], {})[record["seed"]] = 100 * record[metric]["accuracy"]
    return table


def interval_table(records: list[dict], names: list[str], metric: str) -> list[str]:
    """Markdown rows from comparison.summarize: mean, sd and 95% interval of each name with two
    seeds or more, the paired difference to the baseline over two or more shared seeds, and the
    seeds whose interval that difference's spread would bring to TARGET_HALF_WIDTH."""
    summary = summarize([r for r in records if r["configuration"]["name"] in names], metric)
    comparisons = {c.configuration: c for c in compare(summary)}
    split = {"val": "Validation", "test": "Test"}[metric]
    lines = [textwrap.fill(f"{split} accuracy (%) over the seeds run so far, and the paired difference "
                           "to the baseline over the seeds both have; 95% t-intervals; the last column is "
                           f"the number of seeds at which a difference with this spread has a half-width of "
                           f"{TARGET_HALF_WIDTH} points (a planning figure):", 92), "",
             "| configuration | seeds | mean | sd | 95% interval | vs baseline | 95% interval | half-width "
             f"| seeds for ±{TARGET_HALF_WIDTH} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in (n for n in names if n in summary.index and summary.at[n, "runs"] >= 2):
        row = summary.loc[name]
        line = (f"| {name} | {row['runs']:.0f} | {row['accuracy %']:.2f} | {row['sd']:.2f} | "
                f"{row['95% CI low']:.2f} to {row['95% CI high']:.2f} |")
        if name == "baseline":
            line += " reference | | | |"
        elif row["paired seeds"] >= 2:
            c = comparisons[name]
            line += (f" {c.difference:+.2f} | {c.low:+.2f} to {c.high:+.2f} | {c.half_width:.2f} "
                     f"| {c.seeds_for(TARGET_HALF_WIDTH)} |")
        else:
            line += " | | | |"
        lines.append(line)
    return lines


def median_core_seconds(records: list[dict]) -> float:
    """The file's median run in core-seconds (train_seconds x threads): the price of one more run."""
    return statistics.median(r["train_seconds"] * r["provenance"]["threads"] for r in records)


def cost_of_resolution(records: list[dict], names: list[str], seeds: int) -> str:
    """What a half-width of TARGET_HALF_WIDTH for every paired validation difference would take:
    the paired standard deviations pooled over the configurations (each weighted by its degrees
    of freedom), the seeds that pooled spread asks for, and the runs beyond `seeds` with their
    machine time at the file's median run (train_seconds x threads, over MACHINE_CORES)."""
    summary = summarize([r for r in records if r["configuration"]["name"] in names], "val")
    comparisons = [c for c in compare(summary) if c.seeds >= 2]
    if not comparisons:
        return ""
    freedom = sum(c.seeds - 1 for c in comparisons)
    pooled = math.sqrt(sum((c.seeds - 1) * c.spread ** 2 for c in comparisons) / freedom)
    needed = seeds_for_half_width(pooled, TARGET_HALF_WIDTH)
    extra_runs = max(0, needed - seeds) * len(names)
    core_seconds = median_core_seconds(records)
    hours = extra_runs * core_seconds / MACHINE_CORES / 3600
    text = (f"Pooled over the {len(comparisons)} configurations' paired validation differences "
            f"({freedom} degrees of freedom), the spread between seeds is {pooled:.2f} points; a difference "
            f"with that spread has a 95% half-width of {TARGET_HALF_WIDTH} points at {needed} seeds. ")
    if extra_runs:
        more = needed - seeds
        text += (f"That is {more} seed{'s' if more > 1 else ''} beyond the {seeds} planned, {extra_runs} more runs of "
                 f"{len(names)} configurations: at this file's median run ({core_seconds:,.0f} core-seconds), "
                 f"about {hours:.0f} hours of a {MACHINE_CORES}-core machine.")
    else:
        text += f"The {seeds} planned seeds reach it."
    return textwrap.fill(text + " A planning figure: the spread is itself estimated from the seeds so far.", 92)


def wide_comparisons(records: list[dict], names: list[str]) -> list:
    """The paired validation comparisons (with two seeds or more) whose 95% half-width is
    above TARGET_HALF_WIDTH: each configuration against the baseline, and each of the paper's
    tables that the grid holds against that table's reference row."""
    summary = summarize([r for r in records if r["configuration"]["name"] in names], "val")
    comparisons = [c for c in compare(summary) if c.seeds >= 2]
    for table in PAPER_REFERENCE_ROWS:
        if {c.name for c in GRIDS[table]} <= set(names):
            comparisons += [c for c in ablation_report(table, records).reference_comparisons
                            if c.seeds >= 2 and c.configuration != "baseline"]
    return [c for c in comparisons if c.half_width > TARGET_HALF_WIDTH]


def targeted_cost(records: list[dict], names: list[str], grid: str, seeds: int) -> str:
    """Seeds beyond the `seeds` planned for just the comparisons still wider than
    TARGET_HALF_WIDTH, each by its own spread (Comparison.seeds_for), given to both sides of
    the comparison: the runs, their machine time and the commands (ablate --only) that run
    them. Empty if no wide comparison asks for more than the planned seeds."""
    wanted: dict[str, int] = {}
    asks = []
    for c in wide_comparisons(records, names):
        need = c.seeds_for(TARGET_HALF_WIDTH)
        if need > seeds:
            asks.append(f"{c.configuration} vs {c.reference} ({c.half_width:.2f} over {c.seeds} seeds: {need})")
            for name in (c.configuration, c.reference):
                wanted[name] = max(wanted.get(name, 0), need)
    if not wanted:
        return ""
    runs = sum(need - seeds for need in wanted.values())
    core_seconds = median_core_seconds(records)
    hours = runs * core_seconds / MACHINE_CORES / 3600
    text = (f"By its own spread, {'each of these comparisons asks' if len(asks) > 1 else 'this comparison asks'} "
            f"for more than the {seeds} planned seeds (half-width now, seeds so far: seeds asked for): "
            f"{'; '.join(asks)}. Giving only those configurations and their references the seeds asked for "
            f"is {runs} runs beyond the plan, about {hours:.1f} hours of a {MACHINE_CORES}-core machine at "
            "the file's median run; a planning figure, each spread being estimated from a few seeds. "
            "The commands, with the grid's other options:")
    commands = [f"    ablate --grid {grid} --seeds {need} --only "
                + " ".join(f"'{name}'" for name in names if wanted.get(name) == need)
                for need in sorted(set(wanted.values()))]
    return textwrap.fill(text, 92, break_on_hyphens=False) + "\n\n" + "\n".join(commands)


def by_seed_table(scores: dict[str, dict[int, float]], names: list[str], seeds: list[int]) -> list[str]:
    """Markdown rows: one per name, one column per seed."""
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for name in (n for n in names if n in scores):
        lines.append(f"| {name} | " + " | ".join(f"{scores[name][s]:.2f}" if s in scores[name] else ""
                                                 for s in seeds) + " |")
    return lines


def reference_table(records: list[dict], table: str) -> list[str]:
    """Markdown rows: each configuration of the paper's `table` ("pooling", "spatial" or
    "arrangement") but the baseline, paired by seed with the paper's reference row of that table
    (validation accuracy), beside the paper's ImageNet top-1 difference (ResNet-50, points of
    accuracy: the reference row's error minus the configuration's)."""
    report = ablation_report(table, records)  # the chapters' pairing with the reference row
    reference = report.reference_row
    against = {c.configuration: c for c in report.reference_comparisons if c.seeds >= 2}
    lines = [f"| {table}: configuration | seeds | vs {reference} | 95% interval | half-width | paper (ImageNet) |",
             "|---|---|---|---|---|---|"]
    for name in (c.name for c in GRIDS[table] if c.name != "baseline" and c.name in against):
        c = against[name]
        paper = PAPER_TOP1_ERROR[reference] - PAPER_TOP1_ERROR[name]
        lines.append(f"| {name} | {c.seeds} | {c.difference:+.2f} | {c.low:+.2f} to {c.high:+.2f} "
                     f"| {c.half_width:.2f} | {paper:+.2f} |")
    return lines


def status(records: list[dict], grid: str, seeds: int) -> str:
    """The grid's progress; validation accuracy for every configuration, and test accuracy for
    the headline comparison only (baseline, SE, CBAM), the one the test set is kept for."""
    planned = expand_grid(grid, seeds)
    order = list(dict.fromkeys(config.name for config, _ in planned))
    headline = [config.name for config in GRIDS["headline"] if config.name in order]
    val, test = accuracies(records, "val"), accuracies(records, "test")
    seen = sorted({record["seed"] for record in records})
    complete = [s for s in seen if s < seeds and all(s in val.get(name, {}) for name in order)]
    started = [s for s in seen if s < seeds and s not in complete]
    dates = sorted(record["provenance"]["date"][:10] for record in records)
    beyond = [r for r in records if r["seed"] >= seeds]  # more seeds for some configurations (--only)
    head = (f"**Runs in the file: {len(records) - len(beyond)} of {len(planned)}** (written {dates[0]} to "
            f"{dates[-1]}; seeds complete: {', '.join(map(str, complete)) or 'none'}"
            + (f"; begun: {', '.join(map(str, started))}" if started else "") + ")")
    if beyond:
        extended = [name for name in order if any(r["configuration"]["name"] == name for r in beyond)]
        head += (f", and {len(beyond)} beyond them: seeds {', '.join(map(str, sorted({r['seed'] for r in beyond})))} "
                 f"of {', '.join(extended)}")
    head += "."
    lines = [textwrap.fill(head, 92), "Validation accuracy (%) of each run:", "",
             *by_seed_table(val, order, seen), ""]
    if len(val.get("baseline", {})) < 2:
        lines.append(textwrap.fill(
            "One seed of the baseline gives no interval, so there is no table of means and differences "
            "yet: a configuration's interval needs at least two seeds, and its paired difference the same "
            "seeds of the baseline.", 92))
    else:
        lines += interval_table(records, order, "val")
        lines += ["", cost_of_resolution(records, order, seeds)]
        targeted = targeted_cost(records, order, grid, seeds)
        if targeted:
            lines += ["", targeted]
    if headline:
        lines += ["", "Test accuracy (%) of the headline comparison, the only one the test set is "
                  "reported for:", "", *by_seed_table(test, headline, seen)]
        if len(test.get("baseline", {})) >= 2:
            lines += ["", *interval_table(records, headline, "test")]
    tables = [t for t in PAPER_REFERENCE_ROWS if {c.name for c in GRIDS[t]} <= set(order)]
    tables = [t for t in tables if len(val.get(PAPER_REFERENCE_ROWS[t], {})) >= 2]
    if tables:
        lines += ["", textwrap.fill(
            "Each of the paper's tables against its own reference row (validation accuracy, paired by "
            "seed, 95% t-intervals), beside the paper's ImageNet top-1 difference (ResNet-50, one run):", 92)]
        for table in tables:
            lines += ["", *reference_table(records, table)]
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
