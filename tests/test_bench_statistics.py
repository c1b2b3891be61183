"""Intervals for a median timing (comparison.median_interval) and the benchmarks' paired
overhead (benchmarks/bench_networks.py)."""
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_networks import paired_overhead  # noqa: E402
from cbam_tutorial.comparison import median_interval  # noqa: E402


@pytest.mark.parametrize("n, low, high", [(20, 6, 15), (10, 2, 9), (25, 8, 18), (6, 1, 6), (3, 1, 3)])
def test_the_interval_is_the_textbook_pair_of_order_statistics(n, low, high):
    # 95% intervals for a median from binomial(n, 1/2) tables: the 6th and 15th of 20, ...
    median, lo, hi = median_interval(list(range(1, n + 1)))
    assert (lo, hi) == (low, high)
    assert median == (n + 1) / 2


def test_its_coverage_is_at_least_95_percent():
    rng = random.Random(0)
    trials, covered = 4000, 0
    for _ in range(trials):  # skewed data: the interval makes no assumption of a shape
        sample = [rng.expovariate(1.0) for _ in range(20)]
        _, low, high = median_interval(sample)
        covered += low <= math.log(2) <= high  # the exponential's median
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / trials)


def test_the_overhead_is_paired_round_by_round():
    # the machine slows down halfway: unpaired medians would blur it, the ratios do not
    base = [0.100] * 5 + [0.200] * 5
    cbam = [0.125] * 5 + [0.250] * 5
    median, low, high = paired_overhead({None: base, "cbam": cbam}, None, "cbam")
    assert median == pytest.approx(0.25) and low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least one value"):
        median_interval([])
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        median_interval([1.0, 2.0], confidence=95)


def test_a_cpu_that_only_emulates_bf16_times_fp32_alone_and_refuses_the_reference_step(monkeypatch, capsys):
    """Emulated bf16 runs tens of times slower than fp32: its timings would describe the
    emulation, and a time budget scaled by its reference step would be nonsense."""
    import bench_networks

    monkeypatch.setattr(bench_networks, "cpu_supports_bf16", lambda: True)
    assert bench_networks.timed_precisions() == ("fp32", "bf16")
    monkeypatch.setattr(bench_networks, "cpu_supports_bf16", lambda: False)
    assert bench_networks.timed_precisions() == ("fp32",)
    assert "bf16 skipped: this CPU computes it only by emulation" in capsys.readouterr().out
    monkeypatch.setattr(bench_networks, "training_steps", lambda *_: pytest.fail("must not time anything"))
    with pytest.raises(SystemExit, match="this CPU computes bf16 only by emulation"):
        bench_networks.reference_step_ms()
