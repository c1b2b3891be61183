"""Ablation grids: expansion, resumable atomic results, summary statistics by hand, bad input."""
import json
import math
import os
import statistics
import time

import pytest
import torch

from cbam_tutorial import grids, runner
from cbam_tutorial.comparison import mean_interval, summarize
from cbam_tutorial.grids import GRIDS, expand_grid
from cbam_tutorial.ledger import append_record, read_records
from cbam_tutorial.runner import run_grid
from cbam_tutorial.models import build_model


class StandInData:
    """What the runner reads of a loaded data set: which copy it is (no images needed here)."""

    copy = {"source": "synthetic", "sha256": "0" * 64}


DATA = StandInData()


def fake_trainer(config, seed, profile, threads, overrides):
    """A stand-in for training: a record whose accuracy is a known function of the run."""
    accuracy = 0.5 + 0.01 * len(config.name) / 10 + 0.001 * seed
    return {"configuration": {"name": config.name}, "seed": seed, "profile": profile,
            "val": {"accuracy": accuracy}, "test": {"accuracy": accuracy}}


def rendezvous_trainer(config, seed, profile, threads, overrides):
    """Announce this worker, then wait until two distinct workers have announced themselves:
    passes only if two runs are in progress at the same time."""
    folder = os.environ["RENDEZVOUS"]  # inherited by the spawned workers
    open(os.path.join(folder, f"{os.getpid()}.pid"), "w").close()
    deadline = time.time() + 120
    while len([f for f in os.listdir(folder) if f.endswith(".pid")]) < 2:
        if time.time() > deadline:
            raise RuntimeError("the second worker never ran alongside the first")
        time.sleep(0.05)
    return {**fake_trainer(config, seed, profile, threads, overrides), "pid": os.getpid(), "threads": threads}


def test_grids_name_every_configuration_of_the_papers_tables_once():
    names = {grid: [c.name for c in configs] for grid, configs in GRIDS.items()}
    assert names["pooling"] == ["baseline", "cam avg", "cam max", "cam avg+max"]
    assert names["spatial"] == ["baseline", "cbam avg+max k=3", "cbam avg+max k=7", "cbam conv1x1 k=3",
                                "cbam conv1x1 k=7"]
    assert names["arrangement"] == ["baseline", "se", "cbam avg+max k=7", "cbam spatial-channel",
                                    "cbam parallel"]
    assert sorted(names["all"]) == sorted(set(names["pooling"] + names["spatial"] + names["arrangement"]))
    for grid, configs in GRIDS.items():
        assert len({c.name for c in configs}) == len(configs), grid
    assert set(grids.PAPER_TOP1_ERROR) == {c.name for c in GRIDS["all"]}  # each has the paper's row
    runs = expand_grid("all", 3)
    assert len(runs) == 11 * 3 and len(set((c.name, s) for c, s in runs)) == len(runs)
    # seed by seed: a grid stopped part way holds complete sets of pairs
    assert expand_grid("pooling", [4, 7])[:5] == [*((c, 4) for c in GRIDS["pooling"]), (GRIDS["pooling"][0], 7)]
    assert names["headline"] == ["baseline", "se", "cbam avg+max k=7"]


def test_every_configuration_builds_the_model_it_names():
    for config in GRIDS["all"]:
        model = build_model("resnet20", config.attention, **config.options)
        assert model(__import__("torch").randn(1, 3, 32, 32)).shape == (1, 10)


def test_resume_after_a_killed_run_repeats_nothing_and_loses_nothing(tmp_path):
    out = tmp_path / "pooling.jsonl"
    calls = []

    def dies_on_third_run(config, seed, profile, threads, overrides):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped in the middle of the third run
        calls.append((config.name, seed))
        return fake_trainer(config, seed, profile, threads, overrides)

    with pytest.raises(KeyboardInterrupt):
        run_grid("pooling", 2, "quick", out, trainer=dies_on_third_run, log=lambda *_: None, data=DATA)
    assert [(r["configuration"]["name"], r["seed"]) for r in read_records(out)] == [("baseline", 0), ("cam avg", 0)]
    assert all(r["key"].startswith(f"quick/{r['configuration']['name']}/seed=0/") for r in read_records(out))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind

    resumed = []

    def records_calls(config, seed, profile, threads, overrides):
        resumed.append((config.name, seed))
        return fake_trainer(config, seed, profile, threads, overrides)

    records = run_grid("pooling", 2, "quick", out, trainer=records_calls, log=lambda *_: None, data=DATA)
    assert ("baseline", 0) not in resumed and ("cam avg", 0) not in resumed
    assert len(resumed) == 6
    keys = [r["key"] for r in records]
    assert len(keys) == 8 and len(set(keys)) == 8
    # every line of the file is a whole JSON record
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_more_seeds_for_some_configurations_run_only_those(tmp_path):
    """ablate --only: the comparisons whose intervals are still wide get more seeds, and the
    other configurations' runs are neither repeated nor extended."""
    out = tmp_path / "pooling.jsonl"
    run_grid("pooling", 2, "quick", out, trainer=fake_trainer, log=lambda *_: None, data=DATA)
    calls, lines = [], []

    def records_calls(config, seed, profile, threads, overrides):
        calls.append((config.name, seed))
        return fake_trainer(config, seed, profile, threads, overrides)

    records = run_grid("pooling", 4, "quick", out, trainer=records_calls, log=lines.append, data=DATA,
                       only=["cam max", "baseline"])
    assert calls == [("baseline", 2), ("cam max", 2), ("baseline", 3), ("cam max", 3)]
    assert sorted((r["configuration"]["name"], r["seed"]) for r in records) == \
        [("baseline", s) for s in range(4)] + [("cam max", s) for s in range(4)]
    assert len(read_records(out)) == 4 * 2 + 4
    assert any(line.startswith("pooling (2 of its configurations): 8 runs, 4 already in") for line in lines)


def test_only_names_configurations_of_the_grid_in_its_order():
    assert [(c.name, s) for c, s in expand_grid("arrangement", 2, only=["cbam parallel", "se"])] == \
        [("se", 0), ("cbam parallel", 0), ("se", 1), ("cbam parallel", 1)]
    assert expand_grid("pooling", 1, only="baseline") == [(GRIDS["pooling"][0], 0)]
    with pytest.raises(ValueError, match="only must name configurations of the 'pooling' grid, got "
                                         "'cbam parallel'; its configurations: 'baseline', 'cam avg'"):
        expand_grid("pooling", 2, only=["baseline", "cbam parallel"])
    with pytest.raises(ValueError, match="got none"):
        expand_grid("pooling", 2, only=[])


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    append_record(out, {"key": "a", "configuration": {"name": "a"}, "seed": 0})
    before = out.read_bytes()
    real_write = os.write

    def half_then_full_disk(descriptor, data):
        real_write(descriptor, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    with pytest.raises(OSError, match="the disk is full"):
        append_record(out, {"key": "b", "configuration": {"name": "b"}, "seed": 0})
    monkeypatch.undo()
    assert out.read_bytes() == before  # cut back: no half line left


def test_a_torn_or_foreign_line_is_set_aside_with_its_line_number(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"key": "a", "configuration": {"name": "a"}, "seed": 0}\n[1, 2]\n{"key": ')
    with pytest.warns(RuntimeWarning) as caught:
        records = read_records(out)
    assert [r["key"] for r in records] == ["a"]
    messages = [str(w.message) for w in caught]
    assert any("line 2: set aside, JSON that is not a record" in m for m in messages)
    assert any("line 3: set aside, an incomplete record" in m for m in messages)


def test_two_workers_share_the_grid(tmp_path, monkeypatch):
    out = tmp_path / "arrangement.jsonl"
    monkeypatch.setenv("RENDEZVOUS", str(tmp_path))
    records = run_grid("arrangement", 2, "quick", out, workers=2, trainer=rendezvous_trainer,
                       log=lambda *_: None, data=DATA)
    assert len(records) == 10 and len({r["key"] for r in records}) == 10
    assert len({r["pid"] for r in records}) == 2 and os.getpid() not in {r["pid"] for r in records}
    assert {r["threads"] for r in records} == {max(1, (os.cpu_count() or 1) // 2)}


def test_summary_statistics_by_hand():
    scores = {"baseline": [0.90, 0.92, 0.91], "cam avg": [0.91, 0.94, 0.93]}
    records = [{"key": f"{name}/{seed}", "configuration": {"name": name}, "seed": seed,
                "val": {"accuracy": value}, "test": {"accuracy": value}}
               for name, values in scores.items() for seed, value in enumerate(values)]
    table = summarize(records)
    # baseline: mean 91, sd 1, t(2) = 4.303, half-width 4.303 / sqrt(3)
    assert table.loc["baseline", "accuracy %"] == pytest.approx(91.0)
    assert table.loc["baseline", "sd"] == pytest.approx(1.0)
    assert table.loc["baseline", "95% CI high"] == pytest.approx(91.0 + 4.303 / math.sqrt(3))
    # cam avg - baseline, paired by seed: differences 1, 2, 2 -> mean 5/3, sd 0.57735
    differences = [1.0, 2.0, 2.0]
    half = 4.303 * statistics.stdev(differences) / math.sqrt(3)
    assert table.loc["cam avg", "vs baseline"] == pytest.approx(5 / 3)
    assert table.loc["cam avg", "vs baseline CI low"] == pytest.approx(5 / 3 - half)
    assert table.loc["cam avg", "paper top-1 error % (ImageNet, ResNet-50)"] == 23.14
    assert math.isnan(mean_interval([0.5])[2])


def test_bad_grid_seeds_and_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown grid 'kernels'; choose one of 'pooling', 'spatial', "
                                         "'arrangement', 'all'"):
        expand_grid("kernels", 3)
    for seeds in (0, -2, [], [1, 1], [-1], True, [0.5]):
        with pytest.raises(ValueError, match="seeds must be"):
            expand_grid("pooling", seeds)
    with pytest.raises(ValueError, match="unknown profile 'slow'"):
        run_grid("pooling", 1, "slow", tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_grid("pooling", 1, "quick", tmp_path / "x.jsonl", workers=0)
    with pytest.raises(ValueError, match="no val accuracy"):
        summarize([{"key": "k", "configuration": {"name": "baseline"}, "seed": 0, "val": None}])


def test_a_real_record_keeps_training_settings_and_grid_configuration(monkeypatch):
    import cbam_tutorial.train as engine

    from cbam_tutorial.result import TrainingResult

    def fake_train(**kwargs):
        return TrainingResult(config={"model": "resnet20", "attention": kwargs["attention"]}, provenance={},
                              data={}, parameters=1, flops=1, history=[], val={"accuracy": 0.6},
                              test={"accuracy": 0.59}, train_seconds=1.0, model=torch.nn.Linear(1, 1))

    monkeypatch.setattr(engine, "train", fake_train)
    config = GRIDS["pooling"][1]
    record = runner._train_one(config, 2, "quick", None, {})
    assert record["configuration"]["name"] == "cam avg" and record["config"]["attention"] == "cam"
    assert record["profile"] == "quick" and record["seed"] == 2 and "model" not in record
    assert summarize([record]).loc["cam avg", "accuracy %"] == 60.0


def test_a_grid_run_asks_for_no_bar_and_logs_its_cost_where_the_settings_say(monkeypatch, tmp_path):
    import cbam_tutorial.train as engine
    from cbam_tutorial.settings import configure, reset_settings

    asked = {}

    def fake_train(**kwargs):
        asked.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(engine, "train", fake_train)
    configure(train_log=tmp_path / "cost.jsonl", progress=True)
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            runner._train_one(GRIDS["pooling"][0], 0, "quick", None, {})
    finally:
        reset_settings()
    assert asked["progress"] is False and asked["cost_log"] == tmp_path / "cost.jsonl"


def test_verdicts_and_grid_filter_by_hand():
    from cbam_tutorial.comparison import verdicts
    from cbam_tutorial.grids import grid_records

    scores = {"baseline": [0.90, 0.92, 0.91], "cam avg": [0.91, 0.94, 0.93], "cam max": [0.92, 0.90, 0.91],
              "se": [0.95, 0.95, 0.96]}
    records = [{"key": f"{name}/{seed}", "configuration": {"name": name}, "seed": seed,
                "val": {"accuracy": value}} for name, values in scores.items() for seed, value in enumerate(values)]
    assert {r["configuration"]["name"] for r in grid_records(records, "pooling")} == {"baseline", "cam avg", "cam max"}
    sentences = verdicts(summarize(records))
    # cam avg: differences 1, 2, 2 -> interval 5/3 +- 1.43, above zero; cam max: 2, -2, 0 -> contains zero
    assert "better than baseline beyond the seed spread" in sentences["cam avg"]
    assert "within the seed spread" in sentences["cam max"]
    single = verdicts(summarize([r for r in records if r["seed"] == 0]))
    assert "single seed" in single["cam avg"]
    with pytest.raises(ValueError, match="unknown grid"):
        grid_records(records, "kernels")


def test_comparisons_are_data_and_sentences_are_rendered_from_them():
    from cbam_tutorial.comparison import Outcome, compare

    scores = {"baseline": [0.90, 0.92, 0.91], "cam avg": [0.93, 0.95, 0.94], "cam max": [0.92, 0.90, 0.91],
              "se": [0.95]}
    records = [{"configuration": {"name": name}, "seed": seed, "val": {"accuracy": value}}
               for name, values in scores.items() for seed, value in enumerate(values)]
    outcomes = {c.configuration: c for c in compare(summarize(records))}
    assert outcomes["cam avg"].outcome is Outcome.BETTER and outcomes["cam avg"].difference == pytest.approx(3.0)
    assert outcomes["cam avg"].seeds == 3 and outcomes["cam avg"].half_width == pytest.approx(0.0, abs=1e-9)
    assert outcomes["cam max"].outcome is Outcome.WITHIN and not outcomes["cam max"].outcome.resolved
    assert outcomes["se"].outcome is Outcome.NO_INTERVAL
    assert "better than baseline beyond the seed spread" in outcomes["cam avg"].sentence()


def test_the_ablation_report_shows_reference_instead_of_nan_and_computes_its_conclusion():
    from cbam_tutorial.book.report import REFERENCE, ablation_report, shown

    scores = {"baseline": [0.90, 0.92, 0.91], "cam avg": [0.93, 0.95, 0.94], "cam max": [0.92, 0.90, 0.91],
              "cam avg+max": [0.91, 0.94, 0.91]}
    records = [{"configuration": {"name": name}, "seed": seed, "val": {"accuracy": value}, "profile": "p"}
               for name, values in scores.items() for seed, value in enumerate(values)]
    report = ablation_report("pooling", records)
    table = report.shown_table()
    assert table.loc["baseline", "vs baseline"] == REFERENCE and "paired seeds" not in table.columns
    assert not table.drop(columns=[c for c in table.columns if c.startswith("paper")]).isna().any().any()
    assert shown(report.table).loc["cam avg", "paired seeds"] == 3
    assert report.conclusion() == ("Better than the baseline beyond the seed spread: cam avg; the other 2 "
                                   "differences are within it.")
    against = report.shown_against_reference()
    assert report.reference_row == "cam avg" and against.loc["cam avg", "vs cam avg"] == REFERENCE


def test_evaluation_mode_gives_every_submodule_its_mode_back_even_after_an_error():
    from torch import nn

    from cbam_tutorial.models import evaluation_mode

    model = nn.Sequential(nn.BatchNorm2d(3), nn.Sequential(nn.Dropout(), nn.BatchNorm2d(3)))
    model.train()
    model[1][1].eval()  # a mixed state, e.g. frozen BatchNorm statistics
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError):
        with evaluation_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == before


def test_pairing_gain_against_a_hand_computation():
    """Two configurations whose scores move together across seeds: pairing removes the
    shared seed effect. Hand computation: differences 1.0, 1.2, 0.8, 1.0 -> sd 0.1633,
    half-width 3.182 * 0.1633 / 2 = 0.2598; Welch: variances 1.56 and 1.6667, se =
    sqrt(1.56 / 4 + 1.6667 / 4) = 0.8981, dof = 0.6507 / 0.1086 = 5.99, rounded down to 5
    -> 2.571 * 0.8981 = 2.309."""
    from cbam_tutorial.comparison import pairing_gain

    base = {0: 70.0, 1: 71.0, 2: 72.0, 3: 73.0}
    other = {0: 71.0, 1: 72.2, 2: 72.8, 3: 74.0}
    records = [{"configuration": {"name": name}, "seed": seed, "val": {"accuracy": score / 100}}
               for name, scores in (("baseline", base), ("cbam", other)) for seed, score in scores.items()]
    gain = pairing_gain(records, "cbam")
    assert gain.seeds == 4
    assert gain.paired == pytest.approx(3.182 * statistics.stdev([1.0, 1.2, 0.8, 1.0]) / 2, rel=1e-6)
    se = math.sqrt(statistics.variance(other.values()) / 4 + statistics.variance(base.values()) / 4)
    assert se == pytest.approx(0.8981, abs=1e-4)
    assert gain.unpaired == pytest.approx(2.571 * se, rel=1e-6)
    assert gain.ratio < 0.2 and gain.correlation > 0.95
    with pytest.raises(ValueError, match="share 0 seeds"):
        pairing_gain(records, "se")
