"""benchmarks/epochs_ceiling.py: the recipe's accuracy by the epochs a run is given, checked by
hand on made-up records."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from epochs_ceiling import ceiling_table  # noqa: E402


def record(epochs, seed, test, seconds=100.0, name="cbam avg+max k=7"):
    return {"configuration": {"name": name}, "seed": seed, "config": {"profile": {"epochs": epochs}},
            "test": {"accuracy": test / 100}, "val": None, "train_seconds": seconds}


def test_the_ceiling_table_by_hand():
    records = [record(13, s, a) for s, a in enumerate([90.6, 90.7, 90.5])]
    # 40 epochs: 91.6, 91.9, 91.3 -> mean 91.6, sd 0.3, half-width 4.303 * 0.3 / sqrt(3) = 0.745;
    # gains over 13 epochs: +1.0, +1.2, +0.8 -> +1.0, sd 0.2, half-width 0.497
    records += [record(40, s, a, seconds=300.0 + s) for s, a in enumerate([91.6, 91.9, 91.3])]
    lines = ceiling_table(records)
    assert lines[0].startswith("cbam avg+max k=7: test accuracy (%) by the number of epochs")
    assert lines[4] == "| 13 | 3 | 90.60 | 0.10 | 90.35 to 90.85 | 100 | | |"
    assert lines[5] == "| 40 | 3 | 91.60 | 0.30 | 90.85 to 92.35 | 301 | +1.00 | +0.50 to +1.50 |"


def test_each_configuration_gets_its_own_table_and_one_seed_no_gain():
    records = [record(13, 0, 90.0, name="baseline"), record(20, 0, 91.0, name="baseline"), record(13, 0, 90.5)]
    lines = ceiling_table(records)
    assert [line.split(":")[0] for line in lines if line.endswith("95% t-intervals")] == ["baseline",
                                                                                           "cbam avg+max k=7"]
    assert "| 20 | 1 | 91.00 |  |  | 100 | | |" in lines  # one seed: no spread, no interval
