"""One ablation grid's evidence, as the ablation chapters show it.

    report = ablation_report("pooling", reference_records("ablation-all-gpu.jsonl"))
    report.shown_table()                       # accuracy, interval, difference to the baseline
    shown(summarize(records))                  # any summary as a reader sees it
    report.figure()                            # the three panels beside the paper
    report.conclusion()                        # a sentence computed from the comparisons
    report.explorer()                          # the same records, interactive in the browser

Chapters 6 to 8 are the same analysis of three grids; this is that analysis, once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..comparison import Comparison, Outcome, compare, summarize
from ..grids import GRIDS, PAPER_REFERENCE_ROWS, grid_records

REFERENCE = "reference"  # what a reader sees where a row is the one compared against


@dataclass
class AblationReport:
    """A grid's records, its summary against the baseline and against the paper's reference row."""

    grid: str
    records: list
    table: object  # pandas DataFrame from summarize(), against the baseline
    comparisons: list[Comparison]
    reference_row: str
    against_reference: object  # summarize() against the paper's reference row
    reference_comparisons: list[Comparison] = field(default_factory=list)
    reference_records: list = field(default_factory=list)  # the reference row's, where outside the grid

    def seeds(self) -> int:
        return int(self.table["runs"].min())

    def missing(self) -> list[str]:
        """Configurations of the grid without a record."""
        return sorted({c.name for c in GRIDS[self.grid]} - set(self.table.index))

    def conclusion(self) -> str:
        """One sentence from the comparisons with the baseline: which configurations are
        better, which worse beyond the seed spread, and that the rest are within it."""
        better = [c.configuration for c in self.comparisons if c.outcome is Outcome.BETTER]
        worse = [c.configuration for c in self.comparisons if c.outcome is Outcome.WORSE]
        if not better and not worse:
            return (f"No configuration differs from the baseline by more than the seed spread in this budget: with "
                    f"{self.seeds()} runs per configuration these CIFAR-10 results neither confirm nor contradict "
                    "the paper's ordering.")
        parts = []
        if better:
            parts.append(f"better than the baseline beyond the seed spread: {', '.join(better)}")
        if worse:
            parts.append(f"worse than the baseline beyond the seed spread: {', '.join(worse)}")
        rest = len(self.comparisons) - len(better) - len(worse)
        tail = (f"; the other {rest} difference{'s are' if rest > 1 else ' is'} within it." if rest
                else "; no difference is within it.")
        sentence = "; ".join(parts) + tail
        return sentence[0].upper() + sentence[1:]

    def shown_table(self):
        """The summary against the baseline as a reader sees it (see shown)."""
        return shown(self.table.drop(columns=["paired seeds"]), "baseline")

    def shown_against_reference(self):
        columns = ["runs", "accuracy %", "vs baseline", "vs baseline CI low", "vs baseline CI high"]
        renamed = self.against_reference[columns].rename(columns=lambda c: c.replace("baseline", self.reference_row))
        return shown(renamed, self.reference_row)

    def figure(self):
        from ..viz import plot_ablation

        return plot_ablation(self.table, title=f"{self.grid} ablation: CIFAR-10 reference runs beside the paper")

    def explorer(self, metric: str = "val"):
        """The grid and its reference row in a GridExplorer (see grid_explorer), compared at
        first with the paper's reference row."""
        from .grid_explorer import grid_explorer

        order = [c.name for c in GRIDS[self.grid] if c.name in set(self.table.index)]
        if self.reference_row not in order:
            order.append(self.reference_row)
        return grid_explorer(self.records + self.reference_records, metric, self.reference_row, order,
                             title=f"{self.grid} grid explorer")


def shown(table, reference_row: str = "baseline"):
    """A summarize() table as a reader sees it: rounded, counts as integers, and the reference
    row's own difference cells saying 'reference' instead of NaN."""
    import pandas as pd

    rounded = table.round(2)
    shown = pd.DataFrame(index=rounded.index)
    for column in rounded.columns:
        values = []
        for name, value in rounded[column].items():
            missing = isinstance(value, float) and math.isnan(value)
            if missing and name == reference_row and (column.startswith("vs ") or column == "paired seeds"):
                value = REFERENCE
            elif column in ("runs", "paired seeds") and not missing:
                value = int(value)
            values.append(value)
        shown[column] = pd.Series(values, index=rounded.index, dtype=object)
    return shown


def ablation_report(grid: str, records: list[dict], reference_row: str | None = None) -> AblationReport:
    """The analysis of one grid (`records` may hold other grids' rows too: "all" files do)."""
    rows = grid_records(records, grid)
    if not rows:
        raise ValueError(f"no records of the {grid!r} grid in the {len(records)} records given")
    table = summarize(rows)
    reference_row = reference_row or PAPER_REFERENCE_ROWS[grid]
    with_reference = {record_id(r): r for r in rows + [r for r in records
                                                      if r["configuration"]["name"] == reference_row]}
    against = summarize(list(with_reference.values()), baseline=reference_row)
    outside = [r for r in with_reference.values() if r["configuration"]["name"] == reference_row
               and r["configuration"]["name"] not in set(table.index)]
    return AblationReport(grid, rows, table, compare(table), reference_row, against,
                          compare(against, reference=reference_row), outside)


def record_id(record: dict) -> tuple:
    return (record["configuration"]["name"], record["seed"], record.get("profile"))
