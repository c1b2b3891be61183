"""Student's t quantile, the seed count a target interval needs, and the comparison of one
difference across two grids (comparison.py), against scipy and hand computations."""
import math
import statistics

import pytest

from cbam_tutorial.comparison import (Comparison, Outcome, Replication, compare, mean_interval, replicate,
                                     seeds_for_half_width, summarize, t_quantile_975, welch_half_width)


def test_t_quantile_matches_scipy_for_every_degree_of_freedom():
    stats = pytest.importorskip("scipy.stats")
    for dof in range(1, 400):
        assert t_quantile_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=6e-4), dof
    assert math.isnan(t_quantile_975(0))


def test_beyond_the_table_the_quantile_is_not_the_normal_one():
    # by hand from a printed t table: 2.040 at 31, 2.021 at 40, 2.000 at 60, 1.980 at 120
    for dof, printed in [(31, 2.040), (40, 2.021), (60, 2.000), (120, 1.980)]:
        assert t_quantile_975(dof) == pytest.approx(printed, abs=6e-4)


def test_seeds_for_a_half_width_by_hand():
    # sd 0.5, target 0.5: 6 seeds give 2.571 * 0.5 / sqrt(6) = 0.525, 7 give 2.447 * 0.5 / sqrt(7) = 0.462
    assert seeds_for_half_width(0.5, 0.5) == 7
    # sd 0.38 (three seeds of a CBAM-vs-baseline difference): 5 seeds give 0.472, 4 give 0.605
    assert seeds_for_half_width(0.38, 0.5) == 5
    assert seeds_for_half_width(0.0, 0.5) == 2
    # never fewer than the normal approximation (1.96 sd / half-width) ** 2 asks for
    for sd in (2.0, 5.0):
        assert (1.96 * sd / 0.5) ** 2 <= seeds_for_half_width(sd, 0.5) <= (2.05 * sd / 0.5) ** 2


@pytest.mark.parametrize("sd", [0.1, 0.3, 0.77, 1.4, 3.0])
def test_the_count_is_the_first_that_reaches_the_target(sd):
    n = seeds_for_half_width(sd, 0.5)

    def half_width(seeds):  # a sample whose standard deviation is exactly sd
        values = [sd * x / statistics.stdev(range(seeds)) for x in range(seeds)]
        return mean_interval(values)[2]

    assert half_width(n) <= 0.5 + 1e-12
    if n > 2:
        assert half_width(n - 1) > 0.5


@pytest.mark.parametrize("sd, half_width", [(math.nan, 0.5), (-0.1, 0.5), (math.inf, 0.5), (0.4, 0.0), (0.4, -1)])
def test_impossible_settings_are_refused_with_a_reason(sd, half_width):
    with pytest.raises(ValueError, match="sd must|half_width must"):
        seeds_for_half_width(sd, half_width)


def test_a_comparison_knows_its_spread_and_the_seeds_it_would_need():
    # differences to the baseline: +0.3, +0.5, +0.1 points: sd 0.2, by hand
    scores = {"baseline": [90.0, 90.0, 90.0, 91.0], "cam avg": [90.3, 90.5, 90.1], "se": [90.7]}
    records = [{"configuration": {"name": name}, "seed": seed, "val": {"accuracy": value / 100}}
               for name, values in scores.items() for seed, value in enumerate(values)]
    comparisons = {c.configuration: c for c in compare(summarize(records))}
    assert comparisons["cam avg"].spread == pytest.approx(0.2, abs=1e-9)
    # 0.2 points of spread: 2 seeds give 12.706 * 0.2 / sqrt(2) = 1.80, 4 give 3.182 * 0.2 / 2 = 0.318,
    # 3 give 4.303 * 0.2 / sqrt(3) = 0.497
    assert comparisons["cam avg"].seeds_for(0.5) == 3 == seeds_for_half_width(0.2, 0.5)
    assert comparisons["cam avg"].seeds_for(0.32) == 4
    assert math.isnan(comparisons["se"].spread)
    with pytest.raises(ValueError, match="one seed has no spread"):
        comparisons["se"].seeds_for(0.5)


def test_chapter_6_worked_example_counts_as_the_package_does():
    import nbformat
    from pathlib import Path

    chapter = Path(__file__).resolve().parents[1] / "chapters" / "06_ablation_channel_pooling.ipynb"
    solution = next(c.source for c in nbformat.read(chapter, as_version=4).cells
                    if c.source.startswith("````{solution} ex-abl-pooling\n"))
    assert "7 for $s_d = 0.3$, 46 for\n$s_d = 1$" in solution
    assert (seeds_for_half_width(0.3, 0.3), seeds_for_half_width(1.0, 0.3)) == (7, 46)
    assert "says 4 and 43" in solution
    assert (math.ceil((1.96 * 0.3 / 0.3) ** 2), math.ceil((1.96 * 1.0 / 0.3) ** 2)) == (4, 43)


def _comparison(differences, configuration="cbam", reference="baseline"):
    """A Comparison from per-seed differences, as compare() builds it."""
    mean, _, half = mean_interval(differences)
    return Comparison(configuration, reference, mean, mean - half, mean + half, len(differences))


@pytest.mark.parametrize("seed", range(5))
def test_welch_half_width_matches_scipy(seed):
    stats = pytest.importorskip("scipy.stats")
    import random

    generator = random.Random(seed)
    a = [generator.gauss(-0.5, 0.3) for _ in range(generator.randint(3, 12))]
    b = [generator.gauss(-0.4, generator.uniform(0.1, 0.9)) for _ in range(generator.randint(3, 12))]
    welch = stats.ttest_ind(a, b, equal_var=False)
    standard_error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    expected = stats.t.ppf(0.975, math.floor(welch.df)) * standard_error
    got = welch_half_width(statistics.variance(a), len(a), statistics.variance(b), len(b))
    assert got == pytest.approx(expected, rel=1e-3)
    # rounding the degrees of freedom down only widens scipy's own (fractional-dof) interval
    low, high = welch.confidence_interval()
    assert got >= (high - low) / 2 * (1 - 1e-3)


def test_welch_half_width_by_hand_and_bad_input():
    # variances 0.09 over 10 and 0.16 over 5: standard error sqrt(0.009 + 0.032) = 0.2025,
    # dof 0.041^2 / (0.009^2 / 9 + 0.032^2 / 4) = 6.34 -> 6, t = 2.447: half-width 0.4955
    assert welch_half_width(0.09, 10, 0.16, 5) == pytest.approx(2.447 * math.sqrt(0.041), abs=1e-9)
    assert welch_half_width(0.0, 4, 0.0, 4) == 0.0
    with pytest.raises(ValueError, match="at least 2 values"):
        welch_half_width(0.1, 1, 0.1, 5)


def test_a_replication_measures_the_gap_between_two_grids():
    stats = pytest.importorskip("scipy.stats")
    first = [-0.5, -0.3, -0.7, -0.4, -0.6, -0.5, -0.2, -0.8, -0.5, -0.5]
    second = [-0.9, +0.3, -0.6, -1.4, -0.1]
    replication = Replication(_comparison(first), _comparison(second))
    assert replication.gap == pytest.approx(statistics.fmean(second) - statistics.fmean(first))
    welch = stats.ttest_ind(second, first, equal_var=False)
    standard_error = math.sqrt(statistics.variance(first) / 10 + statistics.variance(second) / 5)
    assert replication.gap_half_width == pytest.approx(
        stats.t.ppf(0.975, math.floor(welch.df)) * standard_error, rel=1e-3)
    assert replication.agrees
    # the first grid resolves a loss, the second (5 noisy seeds) does not: they agree, yet differ in verdict
    assert replication.first.outcome is Outcome.WORSE
    assert replication.second.outcome is Outcome.WITHIN
    assert not replication.same_outcome


def test_grids_that_disagree_beyond_their_spread():
    replication = Replication(_comparison([-0.5, -0.4, -0.6, -0.5]), _comparison([0.5, 0.6, 0.4, 0.5]))
    assert replication.gap == pytest.approx(1.0)
    assert not replication.agrees and not replication.same_outcome
    one_seed = Replication(_comparison([-0.5, -0.4]), _comparison([0.3]))
    assert math.isnan(one_seed.gap_half_width) and not one_seed.agrees


def test_replicate_pairs_comparisons_by_configuration_and_reference():
    first = [_comparison([0.1, 0.2], "se"), _comparison([-0.5, -0.4], "cbam"), _comparison([0.0, 0.1], "cam max")]
    second = [_comparison([-0.3, -0.6], "cbam"), _comparison([0.2, 0.0], "se"),
              _comparison([0.2, 0.0], "se", reference="cam avg")]
    pairs = replicate(first, second)
    assert [(r.first.configuration, r.second.difference) for r in pairs] == [("se", pytest.approx(0.1)),
                                                                              ("cbam", pytest.approx(-0.45))]
    with pytest.raises(ValueError, match="the same comparison twice"):
        Replication(first[0], first[1])
