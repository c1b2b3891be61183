"""benchmarks/grid_status.py: the paired spread and what resolving every difference costs,
checked by hand on a made-up grid."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from grid_status import cost_of_resolution, reference_table, status, targeted_cost  # noqa: E402


def record(name, seed, val, seconds=1000.0, threads=1):
    return {"configuration": {"name": name}, "seed": seed, "val": {"accuracy": val / 100},
            "test": {"accuracy": val / 100}, "train_seconds": seconds,
            "provenance": {"threads": threads, "date": "2026-12-06T00:00:00+00:00"}}


def test_the_cost_of_a_half_point_interval_by_hand():
    # differences to the baseline: a: +0.2, -0.6, +0.4 (variance 0.28), b: 0, +1, -1 (variance 1)
    records = [record("baseline", s, 90.0) for s in range(3)]
    records += [record("a", s, 90.0 + d) for s, d in enumerate([0.2, -0.6, 0.4])]
    records += [record("b", s, 90.0 + d, seconds=3000.0) for s, d in enumerate([0.0, 1.0, -1.0])]
    text = " ".join(cost_of_resolution(records, ["baseline", "a", "b"], seeds=5).split())
    assert "(4 degrees of freedom), the spread between seeds is 0.80 points" in text  # sqrt((0.56 + 2) / 4)
    # 12 seeds give 2.201 * 0.8 / sqrt(12) = 0.508, 13 give 2.179 * 0.8 / sqrt(13) = 0.483
    assert "half-width of 0.5 points at 13 seeds" in text
    # 8 seeds beyond the 5 planned, for 3 configurations; the median run is 1000 core-seconds
    assert "24 more runs of 3 configurations" in text
    assert "about 3 hours of a 2-core machine" in text  # 24 * 1000 / 2 / 3600 = 3.3


def test_a_grid_that_already_resolves_says_so():
    records = [record(name, s, 90.0 + (0.1 * s if name == "a" else 0)) for name in ("baseline", "a")
               for s in range(5)]
    assert "The 5 planned seeds reach it." in " ".join(cost_of_resolution(records, ["baseline", "a"], 5).split())


def test_the_status_of_a_real_grid_names_the_cost():
    records = [record(name, s, 90.0 + 0.3 * ((s + i) % 3)) for i, name in enumerate(["baseline", "se"])
               for s in range(3)]
    text = status(records, "headline", 5)
    assert "Runs in the file: 6 of 15" in text and "seeds for ±0.5" in text and "Pooled over" in text


def test_a_paper_table_is_paired_with_its_own_reference_row_beside_the_paper():
    # pooling: cam max - cam avg per seed: +0.3, +0.5, +0.1 -> mean +0.30, sd 0.2,
    # half-width 4.303 * 0.2 / sqrt(3) = 0.50; the paper: 23.14 - 23.20 = -0.06 points
    offsets = {"baseline": [0, 0, 0], "cam avg": [0.2, 0.0, 0.4], "cam max": [0.5, 0.5, 0.5],
               "cam avg+max": [0.2, 0.0, 0.4]}
    records = [record(name, s, 90.0 + d) for name, ds in offsets.items() for s, d in enumerate(ds)]
    rows = reference_table(records, "pooling")
    assert rows[0].startswith("| pooling: configuration | seeds | vs cam avg |")
    assert rows[2] == "| cam max | 3 | +0.30 | -0.20 to +0.80 | 0.50 | -0.06 |"
    assert rows[3] == "| cam avg+max | 3 | +0.00 | +0.00 to +0.00 | 0.00 | +0.34 |"
    assert len(rows) == 4  # neither the baseline nor the reference row against itself


def test_seeds_beyond_the_plan_for_only_the_wide_comparisons_by_hand():
    # se - baseline: 0, +1, -1 (sd 1): t(17) * 1 / sqrt(18) = 0.497 <= 0.5 < t(16) / sqrt(17) = 0.514,
    # so 18 seeds; cbam - baseline: +0.1 each seed (sd 0), resolved: it gets no more seeds
    offsets = {"baseline": [0, 0, 0], "se": [0.0, 1.0, -1.0], "cbam avg+max k=7": [0.1, 0.1, 0.1]}
    records = [record(name, s, 90.0 + d) for name, ds in offsets.items() for s, d in enumerate(ds)]
    text = targeted_cost(records, ["baseline", "se", "cbam avg+max k=7"], "headline", 5)
    flat = " ".join(text.split())
    assert "se vs baseline (2.48 over 3 seeds: 18)" in flat  # half-width 4.303 * 1 / sqrt(3)
    assert "is 26 runs beyond the plan" in flat  # 13 more seeds each for se and the baseline
    assert "about 3.6 hours of a 2-core machine" in flat  # 26 * 1000 / 2 / 3600
    assert text.endswith("    ablate --grid headline --seeds 18 --only 'baseline' 'se'")
    assert targeted_cost(records, ["baseline", "se", "cbam avg+max k=7"], "headline", 18) == ""


def test_runs_beyond_the_plan_are_counted_apart_from_it():
    records = [record(name, s, 90.0 + 0.1 * s) for name in ("baseline", "se", "cbam avg+max k=7") for s in range(2)]
    records += [record(name, s, 90.0) for name in ("baseline", "se") for s in (2, 3)]
    text = " ".join(status(records, "headline", 2).split())
    assert "Runs in the file: 6 of 6** (written 2026-12-06 to 2026-12-06; seeds complete: 0, 1), and 4 beyond " \
           "them: seeds 2, 3 of baseline, se." in text
    assert "| baseline | 90.00 | 90.10 | 90.00 | 90.00 |" in text
