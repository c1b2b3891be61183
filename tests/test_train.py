"""Training on real CIFAR-10 learns; resuming reproduces an uninterrupted run; bad settings fail clearly."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cbam_tutorial.devices as devices
import cbam_tutorial.profiles as profiles
import cbam_tutorial.train as engine
from cbam_tutorial.cost import run_flops
from cbam_tutorial.data import load_cifar10
from cbam_tutorial.devices import choose_device, choose_precision
from cbam_tutorial.loop import one_cycle_lr
from cbam_tutorial.profiles import PROFILES, choose_profile
from cbam_tutorial.settings import reset_settings
from cbam_tutorial.train import load_model, parameter_groups, train
from cbam_tutorial.models import build_model

ROOT = Path(__file__).resolve().parents[1]
# the ResNet-20 recipe on a small subset (the fast recipe's own tiny runs: test_fast_recipe.py)
# test_subset: scoring the whole test set (10,000 images, twice with flip TTA) cost more than the
# training itself and made these the slowest unit tests
TINY = dict(profile="demo", train_subset=512, val_subset=250, test_subset=250, batch_size=128, epochs=2,
            progress=False)
# Limits on the training subprocesses below guard against a hang, they do not check speed:
# the unit tests once ran four times slower than usual on a machine that a training grid
# shared, and 300 s was then too short for this file's resumed run.
HANG_GUARD_S = 1200


@pytest.fixture(scope="module")
def cifar10():
    return load_cifar10()


def test_the_smallest_chapter_profile_learns_on_real_data(cifar10):
    # quick-fp32, chapter 5's profile on a CPU without native bf16, must give its recipe steps
    # enough to learn: in batches of 512 its images made 6 steps and the models stayed near
    # chance (14-16% on two seeds, the training loss above a uniform guess's). The quick
    # profile's own training is chapter 5's, executed by the book's build. In fp32, as the
    # profile runs where it is chosen, whatever this machine's bf16.
    result = train(None, "cbam", profile="quick-fp32", precision="fp32", data=cifar10, progress=False)
    assert result.config["model"] == "fastnet"
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < min(history[0]["train_loss"], math.log(10))  # below chance's loss
    assert result.val["accuracy"] > 0.3  # chance is 0.1
    assert result.test["accuracy"] > 0.3
    assert result.data["source"] in ("original", "jpeg-offline")
    assert history[-1]["lr"] < history[0]["lr"]


def test_the_reported_validation_score_is_that_of_the_returned_model(cifar10):
    # the result takes the last epoch's validation figures instead of scoring the same weights twice
    result = train("resnet20", "cbam", data=cifar10, **TINY)
    chosen = profiles.Profile(**result.config["profile"])
    _, val_loader, _ = engine.data_loaders(cifar10, chosen, seed=0, device=torch.device("cpu"))
    rescored = engine.evaluate(result.model, val_loader, result.config["precision"], chosen.tta)
    assert result.val == pytest.approx(rescored, rel=1e-6)
    assert result.val == {"loss": result.history[-1]["val_loss"], "accuracy": result.history[-1]["val_accuracy"]}


def test_resuming_after_an_interruption_gives_the_same_numbers(cifar10, tmp_path, monkeypatch):
    straight = train("resnet20", "cbam", data=cifar10, out_dir=tmp_path / "straight", **TINY)

    real_evaluate = engine.evaluate
    calls = {"n": 0}

    def interrupt_during_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the validation after epoch 2, before its checkpoint
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", interrupt_during_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train("resnet20", "cbam", data=cifar10, out_dir=tmp_path / "resumed", **TINY)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 0 and len(saved["history"]) == 1  # lost at most the running epoch
    monkeypatch.setattr(engine, "evaluate", real_evaluate)
    resumed = train("resnet20", "cbam", data=cifar10, out_dir=tmp_path / "resumed", **TINY)

    for a, b in zip(straight.history, resumed.history):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert straight.test == pytest.approx(resumed.test)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    reloaded = load_model(tmp_path / "resumed")
    assert isinstance(reloaded, torch.nn.Module)


def test_a_killed_process_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    # tiny: epochs of 512 images, each well over the 0.2 s between seeing the first checkpoint
    # and the kill, so the process dies part way through
    command = [sys.executable, "-m", "cbam_tutorial", "train", "--model", "resnet20", "--attention", "se",
               "--profile", "tiny", "--epochs", "6", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checkpoint = out / "checkpoint.pt"
    deadline = time.time() + HANG_GUARD_S
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), process.communicate()[0].decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = torch.load(checkpoint, weights_only=True)["epoch"] + 1
    assert 1 <= done < 6
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    provenance = metrics["provenance"]
    for key in ("commit", "date", "torch", "torchvision", "device", "python"):
        assert provenance[key]
    assert metrics["config"]["seed"] == 0 and metrics["config"]["profile"]["name"] == "tiny"
    assert metrics["config"]["precision"] in ("bf16", "fp32")
    assert metrics["data"]["source"] in ("original", "jpeg-offline")
    assert metrics["train_seconds"] > 0


def test_checkpoint_of_other_settings_is_not_silently_reused(cifar10, tmp_path):
    train("resnet20", None, data=cifar10, out_dir=tmp_path, **{**TINY, "epochs": 1})
    with pytest.raises(ValueError, match="written by a run with other settings \\(attention\\)"):
        train("resnet20", "cbam", data=cifar10, out_dir=tmp_path, **{**TINY, "epochs": 1})


def test_a_checkpoint_resumes_after_its_profile_is_reworded(cifar10, tmp_path, monkeypatch):
    first = train("resnet20", None, data=cifar10, out_dir=tmp_path, **{**TINY, "epochs": 1})
    reworded = dataclasses.replace(PROFILES["demo"], description="the same run, described by later code")
    monkeypatch.setitem(PROFILES, "demo", reworded)
    again = train("resnet20", None, data=cifar10, out_dir=tmp_path, **{**TINY, "epochs": 1})
    assert again.history == first.history  # resumed after its last epoch: nothing trained again
    assert again.config["profile"]["description"].startswith("the same run, described by later code")
    with pytest.raises(ValueError, match=r"other settings \(profile\.lr\)"):
        train("resnet20", None, data=cifar10, out_dir=tmp_path, **{**TINY, "epochs": 1, "lr": 0.05})


def test_recipe_pieces():
    model = build_model("resnet20", "cbam")
    decay, scales, shifts, biases = parameter_groups(model, 5e-4)
    assert all(p.ndim > 1 for p in decay["params"]) and shifts["params"] == []  # ResNet BNs train scales
    assert all(p.ndim == 1 for p in scales["params"] + biases["params"])
    assert scales["weight_decay"] == biases["weight_decay"] == 0 and biases["lr_scale"] == 1.0
    lrs = [one_cycle_lr(s, 100, 0.4, 0.2) for s in range(100)]
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 19
    assert lrs[0] < lrs[10] < lrs[19] and lrs[50] > lrs[99] >= 0


def test_profile_choice(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    monkeypatch.setattr(profiles, "cpu_supports_bf16", lambda: True)
    assert choose_profile(None, torch.device("cpu")).name == "quick"
    assert choose_profile(None, torch.device("cuda")).name == "gpu"
    monkeypatch.setenv(profiles.PROFILE_ENV, "cpu")
    assert choose_profile(None, torch.device("cpu")).name == "quick"  # the settings were read once
    reset_settings()
    assert choose_profile(None, torch.device("cpu")).name == "cpu"
    assert choose_profile("quick", torch.device("cpu")).name == "quick"
    monkeypatch.setenv(profiles.PROFILE_ENV, "huge")
    reset_settings()
    with pytest.raises(ValueError, match=r"unknown profile 'huge' \(from \$CBAM_TUTORIAL_PROFILE\); choose one of"):
        choose_profile(None, torch.device("cpu"))
    assert set(PROFILES) == {"quick", "quick-fp32", "cpu", "cpu-resnet20", "grid", "ablation", "demo",
                             "demo-fp32", "tiny", "gpu", "gpu-resnet20", "full"}
    for profile in PROFILES.values():
        assert profile.live_grid in PROFILES  # a chapter's live grid runs in a profile that exists


def test_a_cpu_without_native_bf16_gets_the_smaller_chapter_profile_and_fp32(monkeypatch):
    """Where bf16 would be emulated, steps run in fp32 (several times slower): the chapters'
    profile and their live grids' shrink to fit the book's time budget there."""
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    reset_settings()
    cpu = torch.device("cpu")
    for native, profile, live_grid, precision in ((True, "quick", "demo", "bf16"),
                                                  (False, "quick-fp32", "demo-fp32", "fp32")):
        monkeypatch.setattr(profiles, "cpu_supports_bf16", lambda: native)
        monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: native)
        chosen = choose_profile(None, cpu)
        assert (chosen.name, chosen.live_grid, choose_precision(cpu)) == (profile, live_grid, precision)
    assert choose_profile(None, torch.device("mps")).name == "quick"  # only a CPU is judged by bf16
    # the work of one run (forward passes per image counted as cost.run_flops counts them)
    for small, full, at_most in (("quick-fp32", "quick", 1 / 10), ("demo-fp32", "demo", 1 / 3)):
        assert run_flops(1.0, PROFILES[small]) <= at_most * run_flops(1.0, PROFILES[full])


def test_bad_settings(cifar10):
    with pytest.raises(ValueError, match="unknown profile 'slow'; choose one of 'quick', 'quick-fp32', 'cpu', 'cpu-resnet20'"):
        train("resnet20", profile="slow", data=cifar10)
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        train("vgg16", profile="quick", data=cifar10, epochs=1)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available here"):
            choose_device("cuda")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        choose_precision(torch.device("cpu"), "fp8")
    with pytest.raises(ValueError, match="unknown profile field"):
        train("resnet20", profile="quick", data=cifar10, epoch=3)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        train("resnet20", profile="quick", data=cifar10, seed=-1)


def test_an_overridden_profile_says_what_ran_instead_of_its_defaults():
    cpu = torch.device("cpu")
    grid = PROFILES["grid"]
    longer = profiles.resolve_profile("grid", cpu, {"epochs": 15, "seeds": (0,)})
    assert longer.epochs == 15
    assert longer.description == f"{grid.description}; run with epochs=15, seeds=(0,) instead"
    # an override equal to the profile's own value, or none, leaves the description alone
    assert profiles.resolve_profile("grid", cpu, {"epochs": grid.epochs}).description == grid.description
    assert profiles.resolve_profile("grid", cpu, {}).description == grid.description
    chosen = profiles.resolve_profile("grid", cpu, {"epochs": 2, "description": "a short check"})
    assert chosen.description == "a short check"


def test_command_line_help_explains_every_option():
    result = subprocess.run([sys.executable, "-m", "cbam_tutorial", "train", "--help"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0
    for option in ("--model", "--attention", "--profile", "--seed", "--out", "--epochs", "--device",
                   "--precision", "--reduction", "--kernel-size", "--arrangement", "--channel-pooling",
                   "--spatial-pooling", "--data-source", "--test-curve", "--progress"):
        assert option in result.stdout
    bad = subprocess.run([sys.executable, "-m", "cbam_tutorial", "train", "--out", "x", "--device", "tpu"],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "unknown device 'tpu'" in bad.stderr


def test_progressive_resizing_and_cost_log(cifar10, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    seen = []
    model = build_model("resnet20", None)
    original_forward = type(model).forward

    def record_size(self, x):
        seen.append(x.shape[-1])
        return original_forward(self, x)

    monkeypatch.setattr(type(model), "forward", record_size)
    result = train("resnet20", None, data=cifar10, low_resolution=24, low_resolution_epochs=1, cost_log=log,
                   **TINY)
    # seen[0] is the FLOP count at 32 x 32; then epoch 1's 4 training steps at 24, its
    # evaluation (2 flip passes) at 32, and epoch 2's training steps at 32
    assert seen[1:5] == [24] * 4 and seen[5:7] == [32, 32] and seen[7:11] == [32] * 4
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [{"model": "resnet20", "attention": None, "profile": "demo", "epochs": 2,
                      "train_images_seen": 2 * 512, "evaluated_images": 2 * 250 + 250,
                      "evaluation_views": 2,
                      "forward_flops_per_image": result.flops, "train_seconds": result.train_seconds}]
    with pytest.raises(ValueError, match="low_resolution must be an integer from 8 to 32 pixels"):
        train("resnet20", None, data=cifar10, low_resolution=40, low_resolution_epochs=1, **TINY)


def test_the_zoo_trains_once_with_the_choices_the_settings_make(cifar10, tmp_path, monkeypatch, capsys):
    from cbam_tutorial.settings import configure
    from cbam_tutorial.zoo import trained_model

    log = tmp_path / "log.jsonl"
    kept = []
    monkeypatch.setattr("cbam_tutorial.zoo.keep_freed_memory", lambda: kept.append(True))
    configure(train_log=log, progress=True)
    try:
        model, result = trained_model(None, profile="tiny", root=tmp_path / "zoo", data=cifar10,
                                      with_metrics=True)
        assert "epoch" in capsys.readouterr().err  # the bar the settings asked for
        again = trained_model(None, profile="tiny", root=tmp_path / "zoo", data=cifar10)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(lines) == 1 and lines[0]["profile"] == "tiny" and kept == [True]  # trained once
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
        metrics_path = tmp_path / "zoo" / "tiny-fastnet-baseline-seed0" / "metrics.json"
        assert result.test == json.loads(metrics_path.read_text())["test"]

        # a model cached under other settings (as an older version of a profile left it) is
        # not returned as the one asked for: it is trained again, with a warning that says why
        stale = json.loads(metrics_path.read_text())
        stale["config"]["profile"]["lr"] *= 2
        stale["config"]["profile"]["description"] = "worded otherwise"  # does not change training
        metrics_path.write_text(json.dumps(stale))
        with pytest.warns(UserWarning, match=r"trained with other settings \(profile\.lr\); training it again"):
            retrained = trained_model(None, profile="tiny", root=tmp_path / "zoo", data=cifar10)
        assert len(log.read_text().splitlines()) == 2
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), retrained.state_dict().values()))
        metrics_path.write_text('{"config": {"profile": ')  # cut off mid-write
        with pytest.warns(UserWarning, match=r"has an unreadable metrics\.json .*; training it again"):
            trained_model(None, profile="tiny", root=tmp_path / "zoo", data=cifar10)
        assert len(log.read_text().splitlines()) == 3
    finally:
        reset_settings()


def test_on_epoch_can_stop_training(cifar10):
    records = []
    result = train("resnet20", None, data=cifar10, on_epoch=lambda r: records.append(r) or False, **TINY)
    assert result.stopped_early and len(result.history) == 1 and records[0]["epoch"] == 1


def test_every_chapter_trains_at_most_five_minutes_on_a_t4_by_the_estimate():
    """The estimate (not a measurement): counted FLOPs at 10% of a T4's stated fp16 peak."""
    from cbam_tutorial.grids import GRIDS
    from cbam_tutorial.cost import count_flops, gpu_seconds_estimate, run_flops

    gpu = PROFILES["gpu"]
    cbam = count_flops(build_model(gpu.model, "cbam"))
    # chapters 5 and 9 train three models in the gpu profile; 6 to 8 one run per grid
    # configuration in its live-grid profile (8's arrangement grid is the largest, 5 runs)
    chapter_5 = 3 * gpu_seconds_estimate(run_flops(cbam, gpu))
    live = PROFILES[gpu.live_grid]
    chapter_8 = len(GRIDS["arrangement"]) * gpu_seconds_estimate(
        run_flops(count_flops(build_model(live.model, "cbam")), live))
    print(f"T4 training estimate: chapters 5 and 9 {chapter_5:.0f} s, chapter 8 {chapter_8:.0f} s")
    assert chapter_5 <= 300 and chapter_8 <= 300
