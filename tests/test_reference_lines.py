"""Reading the committed results files: benchmark scripts' lines and a grid's setup."""
import json

import pytest
import torch

from cbam_tutorial.book import reference
from cbam_tutorial.book.reference import (GridSetup, grid_setup, reference_lines, reference_names,
                                         reference_records, run_machine)
from cbam_tutorial.provenance import provenance


def test_every_recipe_ablation_line_is_read_with_its_variant():
    names = reference_names("train/recipe-ablation-*.jsonl")
    for name in names:
        lines = reference_lines(name)
        assert lines and all(isinstance(line["variant"], str) for line in lines)
        assert all(0 < line["val_accuracy"] < 1 for line in lines)
    assert "train/recipe-ablation-10ep-round3.jsonl" in names
    round3 = reference_lines("train/recipe-ablation-10ep-round3.jsonl")  # chapter 5's table
    assert "full recipe" in {line["variant"] for line in round3}


def test_a_torn_line_is_an_error_that_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "results_dir", lambda: tmp_path)
    (tmp_path / "pieces.jsonl").write_text(json.dumps({"variant": "a"}) + "\n\n" + '{"variant": "b"')
    with pytest.raises(ValueError, match=r"pieces.jsonl, line 3: not JSON .*results/README.md"):
        reference_lines("pieces.jsonl")


def test_a_missing_file_says_where_results_come_from(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="ship with the repository"):
        reference_lines("train/none.jsonl")


def _record(key="grid/baseline/seed=0", device="CPU Intel Xeon, 1 threads", source="jpeg-offline",
            description="two epochs of something", **profile):
    return {"key": key, "profile": "grid", "data": {"source": source},
            "config": {"profile": {"description": description, "epochs": 15, **profile},
                       "precision": "bf16", "device_type": "cpu"},
            "provenance": {"device": device}}


def test_a_grid_setup_is_read_from_its_records_without_the_thread_count():
    setup = grid_setup([_record(), _record(key="grid/se/seed=0", device="CPU Intel Xeon, 2 threads")])
    assert setup == GridSetup("grid", "two epochs of something", 15, "jpeg-offline", (("CPU Intel Xeon", 2),))
    assert setup.sentence() == "the “grid” profile (two epochs of something), on CPU Intel Xeon"
    assert setup.schedule() == "15 epochs, CPU Intel Xeon"


def test_a_grid_that_spans_machines_names_each_with_its_runs():
    records = [_record(), _record(device="CPU AMD EPYC, 1 threads"), _record(device="CPU Intel Xeon, 1 threads"),
               _record(device="CPU Other")]
    setup = grid_setup(records)
    assert setup.machines == (("CPU Intel Xeon", 2), ("CPU AMD EPYC", 1), ("CPU Other", 1))
    assert setup.schedule() == "15 epochs, CPU Intel Xeon (2 runs), CPU AMD EPYC (1 run) and CPU Other (1 run)"


def test_a_record_that_names_its_machine_is_read_by_that_name():
    named = _record(device="CPU Intel(R) Xeon(R) as the device string spells it, 2 threads")
    named["provenance"]["machine"] = "CPU Intel Xeon"  # preferred to the device string
    assert run_machine(named) == "CPU Intel Xeon"
    assert grid_setup([named, _record(device="CPU Intel Xeon, 1 threads")]).machines == (("CPU Intel Xeon", 2),)


def test_provenance_names_the_machine_beside_the_device_with_its_threads():
    cpu = provenance(torch.device("cpu"))
    assert cpu["machine"].startswith("CPU ") and "threads" not in cpu["machine"]
    assert cpu["device"] == f"{cpu['machine']}, {torch.get_num_threads()} threads"
    assert run_machine({"provenance": cpu}) == run_machine({"provenance": {"device": cpu["device"]}})


def test_the_committed_grids_each_have_one_setup():
    gpu = grid_setup(reference_records("ablation-all-gpu.jsonl"))
    assert (gpu.profile, gpu.epochs, gpu.machines) == ("gpu", 13, (("NVIDIA H100 80GB HBM3", 99),))
    records = reference_records("ablation-all-cpu-15ep.jsonl")
    cpu = grid_setup(records)
    assert (cpu.profile, cpu.epochs, cpu.data) == ("grid", 15, "jpeg-offline")
    assert sum(runs for _, runs in cpu.machines) == len(records)
    assert all(name.startswith("CPU ") and "threads" not in name for name, _ in cpu.machines)


@pytest.mark.parametrize("odd, field", [(_record(epochs=13), "profile field epochs"),
                                        (_record(lr=0.1), "profile field lr"),
                                        (_record(source="torchvision"), "data")])
def test_records_of_different_setups_are_refused_with_the_run_that_differs(odd, field):
    odd["key"] = "grid/odd/seed=1"
    with pytest.raises(ValueError, match=rf"'grid/odd/seed=1' has {field} .*one grid's runs in one file"):
        grid_setup([_record(), odd])


def test_a_reworded_description_is_not_another_setup():
    setup = grid_setup([_record(), _record(description="the same run, described by later code")])
    assert setup.description == "two epochs of something"


def test_no_records_have_no_setup():
    with pytest.raises(ValueError, match="run the grid first"):
        grid_setup([])
