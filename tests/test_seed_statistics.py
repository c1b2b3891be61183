"""Student's t quantile and the seed count a target interval needs (comparison.py), against
scipy and hand computations."""
import math
import statistics

import pytest

from cbam_tutorial.comparison import mean_interval, seeds_for_half_width, t_quantile_975


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
