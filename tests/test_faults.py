"""Faults and bad input: each gets a clear error that says what to do, and nothing is lost.

The results file is a ledger (concurrent writers, torn and foreign lines, reruns with other
settings); a grid stops and keeps on Ctrl-C and leaves no worker behind when killed; every
setting is checked before work; file-system failures (permission, full disk, a file in
the way) are one clear line with no partial file left; corrupt or altered data caches are
named and rebuilt; the APIs refuse nonsense.
"""
import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from cbam_test_models import synthetic_cifar10
from cbam_tutorial import data as data_module
from cbam_tutorial.ledger import append_record, read_ledger, read_records
from cbam_tutorial.runner import GridFailures, run_grid
from cbam_tutorial.attention import build_attention
from cbam_tutorial.ledger import GridLock, LedgerBusy
from cbam_tutorial.storage import StorageError
from cbam_tutorial.train import train

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(log=lambda *_: None)


class StandInData:
    copy = {"source": "synthetic", "sha256": "0" * 64}


def quick_record(config, seed, profile, threads, overrides):
    return {"configuration": {"name": config.name}, "seed": seed, "profile": profile,
            "val": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "cbam_tutorial", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


# --- the results file is a ledger ------------------------------------------------------------

def test_a_rerun_with_a_changed_override_runs_again(tmp_path):
    out, calls = tmp_path / "grid.jsonl", []

    def counting(config, seed, profile, threads, overrides):
        calls.append(overrides.get("epochs"))
        return quick_record(config, seed, profile, threads, overrides)

    run_grid("pooling", 1, "tiny", out, trainer=counting, data=StandInData(), **QUIET)
    run_grid("pooling", 1, "tiny", out, trainer=counting, data=StandInData(), **QUIET)  # nothing new
    run_grid("pooling", 1, "tiny", out, trainer=counting, data=StandInData(), epochs=2, **QUIET)
    assert calls == [None] * 4 + [2] * 4
    assert len({r["key"] for r in read_records(out)}) == 8


def test_a_record_of_another_data_copy_is_another_run(tmp_path):
    out = tmp_path / "grid.jsonl"
    other = type("Other", (), {"copy": {"source": "synthetic", "sha256": "1" * 64}})()
    run_grid("pooling", 1, "tiny", out, trainer=quick_record, data=StandInData(), **QUIET)
    records = run_grid("pooling", 1, "tiny", out, trainer=quick_record, data=other, **QUIET)
    assert len(read_records(out)) == 8
    assert len(records) == 4  # the runs on the other copy only


def test_a_grid_returns_its_own_runs_not_the_files_other_lines(tmp_path):
    # one file, two training-set sizes: each call's summary must see only its own size
    out = tmp_path / "sizes.jsonl"

    def scored_by_size(config, seed, profile, threads, overrides):
        accuracy = 0.5 if overrides.get("train_subset") == 100 else 0.9
        return {**quick_record(config, seed, profile, threads, overrides), "val": {"accuracy": accuracy}}

    small = run_grid("pooling", 2, "tiny", out, trainer=scored_by_size, data=StandInData(),
                     train_subset=100, **QUIET)
    large = run_grid("pooling", 2, "tiny", out, trainer=scored_by_size, data=StandInData(),
                     train_subset=200, **QUIET)
    assert len(read_records(out)) == 16 and len(small) == len(large) == 8
    assert {r["val"]["accuracy"] for r in small} == {0.5}
    assert {r["val"]["accuracy"] for r in large} == {0.9}
    again = run_grid("pooling", 2, "tiny", out, trainer=scored_by_size, data=StandInData(),
                     train_subset=100, **QUIET)  # nothing to run: the same 8 records
    assert sorted(r["key"] for r in again) == sorted(r["key"] for r in small)


def test_concurrent_appends_from_two_processes_keep_every_record(tmp_path):
    out = tmp_path / "shared.jsonl"
    writer = ("import sys; from cbam_tutorial.ledger import append_record\n"
              "for i in range(100):\n"
              "    append_record(sys.argv[1], {'configuration': {'name': sys.argv[2]}, 'seed': i, 'pad': 'x' * 5000})")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", writer, str(out), name], env=env) for name in "ab"]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    ledger = read_ledger(out)
    assert ledger.set_aside == [] and len(ledger.records) == 200
    assert {(r["configuration"]["name"], r["seed"]) for r in ledger.records} == \
        {(name, i) for name in "ab" for i in range(100)}


def test_a_second_runner_on_the_same_file_is_refused_before_any_work(tmp_path):
    out = tmp_path / "grid.jsonl"
    with GridLock(out):
        with pytest.raises(LedgerBusy, match=f"is being written by another ablation run \\(process {os.getpid()}\\)"):
            run_grid("pooling", 1, "tiny", out, trainer=quick_record, data=StandInData(), **QUIET)


def test_a_lock_left_by_a_killed_runner_does_not_block(tmp_path):
    out = tmp_path / "grid.jsonl"
    (tmp_path / ".grid.jsonl.lock").write_text("99999")  # the file stays; the kernel freed its lock
    assert len(run_grid("pooling", 1, "tiny", out, trainer=quick_record, data=StandInData(), **QUIET)) == 4


def test_torn_and_garbage_lines_are_set_aside_and_the_grid_goes_on(tmp_path):
    out = tmp_path / "grid.jsonl"
    run_grid("pooling", 1, "tiny", out, trainer=quick_record, data=StandInData(), **QUIET)
    good = out.read_bytes()
    out.write_bytes(good + b"\xff\xfe garbage\n" + good.splitlines()[0][:40])  # binary junk, then a torn line
    lines = []
    records = run_grid("pooling", 2, "tiny", out, trainer=quick_record, data=StandInData(), log=lines.append)
    assert any(f"{out}, line 5: set aside, bytes that are not UTF-8 text" in line for line in lines)
    assert any(f"{out}, line 6: set aside, an incomplete record" in line for line in lines)
    assert any("4 already in" in line for line in lines)
    assert len(records) == 8  # the four old ones kept, four new ones appended on lines of their own
    assert len(read_ledger(out).set_aside) == 2


def test_a_failing_run_is_reported_and_the_others_are_recorded(tmp_path):
    out = tmp_path / "grid.jsonl"

    def one_fails(config, seed, profile, threads, overrides):
        if config.name == "cam max":
            raise RuntimeError("CUDA out of memory")
        return quick_record(config, seed, profile, threads, overrides)

    with pytest.raises(GridFailures, match=r"(?s)1 run\(s\) failed .*cam max.*CUDA out of memory") as failure:
        run_grid("pooling", 1, "tiny", out, trainer=one_fails, data=StandInData(), **QUIET)
    assert len(failure.value.failures) == 1
    assert sorted(r["configuration"]["name"] for r in read_records(out)) == ["baseline", "cam avg", "cam avg+max"]


# --- check before work, fail clearly -------------------------------------------------------------

@pytest.mark.parametrize("setting, message", [
    ({"epochs": 0}, "epochs must be an integer of at least 1, got 0"),
    ({"epochs": -3}, "epochs must be an integer of at least 1, got -3"),
    ({"epochs": True}, "epochs must be an integer of at least 1, got True"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"lr": 0.0}, "lr must be a number above 0"),
    ({"lr": float("nan")}, "lr must be a number above 0"),
    ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a number in \\[0, 1\\)"),
    ({"momentum": -0.1}, "momentum must be a number in \\[0, 1\\)"),
    ({"train_subset": 0}, "train_subset must be an integer of at least 1"),
    ({"ema_decay": 1.0}, "ema_decay must be a number in \\(0, 1\\)"),
    ({"low_resolution_epochs": 9}, "low_resolution_epochs must be an integer from 0 to epochs"),
    ({"train_on": "test"}, "train_on must be 'train' or 'train\\+val'"),
])
def test_impossible_settings_are_refused_before_any_work(setting, message):
    with pytest.raises(ValueError, match=message):
        train("resnet20", None, profile="tiny", data=synthetic_cifar10(), progress=False, **setting)


def test_impossible_grid_settings_are_refused_before_the_first_run(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="epochs must be an integer of at least 1, got 0"):
        run_grid("pooling", 1, "tiny", tmp_path / "g.jsonl", trainer=lambda *a: calls.append(a),
                 data=StandInData(), epochs=0, **QUIET)
    with pytest.raises(ValueError, match="workers must be a positive integer, got True"):
        run_grid("pooling", 1, "tiny", tmp_path / "g.jsonl", workers=True)
    assert calls == []


def test_the_command_line_refuses_zero_or_negative_epochs():
    for epochs in ("0", "-3"):
        done = cli("train", "--out", "/tmp/never-used", "--profile", "tiny", "--epochs", epochs)
        assert done.returncode == 2 and "epochs must be an integer of at least 1" in done.stderr
        assert "Traceback" not in done.stderr


def test_an_unwritable_results_file_is_found_before_training(tmp_path):
    calls = []
    (tmp_path / "grid.jsonl").mkdir()  # a folder where the file should be
    with pytest.raises(StorageError, match="grid.jsonl: a folder is in the way"):
        run_grid("pooling", 1, "tiny", tmp_path / "grid.jsonl", trainer=lambda *a: calls.append(a),
                 data=StandInData(), **QUIET)
    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(StorageError, match="blocker: a file is in the way where a folder is needed"):
        run_grid("pooling", 1, "tiny", tmp_path / "blocker" / "grid.jsonl", trainer=lambda *a: calls.append(a),
                 data=StandInData(), **QUIET)
    assert calls == []


def test_permission_denied_is_one_clear_line(tmp_path, monkeypatch):
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("grid.jsonl"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(StorageError, match="cannot append a record to .*grid.jsonl: permission denied; choose"):
        append_record(tmp_path / "grid.jsonl", {"configuration": {"name": "a"}, "seed": 0})


def test_the_command_line_reports_file_system_errors_without_a_traceback(tmp_path):
    (tmp_path / "out.jsonl").mkdir()
    done = cli("ablate", "--grid", "pooling", "--seeds", "1", "--profile", "tiny", "--out", str(tmp_path / "out.jsonl"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: cannot write {tmp_path / 'out.jsonl'}: a folder is in the way; "
                                                "remove it or choose another file name"]


def test_a_figure_path_that_cannot_be_written_is_found_before_training(tmp_path):
    (tmp_path / "fig.png").mkdir()
    done = cli("ablate", "--grid", "pooling", "--seeds", "1", "--profile", "tiny", "--out", str(tmp_path / "g.jsonl"),
               "--figure", str(tmp_path / "fig.png"))
    assert done.returncode == 1 and "fig.png: a folder is in the way" in done.stderr
    assert not (tmp_path / "g.jsonl").exists() or read_records(tmp_path / "g.jsonl") == []


def test_a_checkpoint_folder_that_is_a_file_is_found_before_training(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(StorageError, match="a file is in the way where a folder is needed"):
        train("resnet20", None, profile="tiny", data=synthetic_cifar10(), out_dir=tmp_path / "run", progress=False)


@contextmanager
def full_disk(tmp_path, size="3m"):
    """A small tmpfs mounted for the block (the test is skipped where that is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    with full_disk(tmp_path) as disk:
        out = disk / "run"
        data = synthetic_cifar10()
        # one epoch's checkpoint (about 2.3 MB) fits on the 3 MB disk; a second beside it does not
        with pytest.raises(StorageError, match="cannot write .*checkpoint.pt: the disk is full .* free some space"):
            # the ResNet-20 recipe (the fast one's lookahead doubles a checkpoint)
            train("resnet20", None, out_dir=out, profile="demo", data=data, progress=False, train_subset=128,
                  val_subset=500, test_subset=1_000, batch_size=64, epochs=2)
        kept = torch.load(out / "checkpoint.pt", weights_only=True)  # still whole and readable
        assert kept["epoch"] == 0 and len(kept["history"]) == 1  # the first epoch, whole
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no partial temporary file


def test_a_full_disk_keeps_the_results_file_whole(tmp_path):
    with full_disk(tmp_path, size="64k") as disk:
        out = disk / "grid.jsonl"
        append_record(out, {"configuration": {"name": "a"}, "seed": 0})
        before = out.read_bytes()
        with pytest.raises(StorageError, match="the disk is full"):
            append_record(out, {"configuration": {"name": "b"}, "seed": 0, "pad": "x" * 200_000})
        assert out.read_bytes() == before and read_ledger(out).set_aside == []


# --- interruption that stops and keeps ---------------------------------------------------------

def children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@contextmanager
def ctrl_c_as_in_a_terminal():
    """Processes started inside get Ctrl-C's default action, as a terminal's foreground job does.

    A job started in the background (`pytest ... &`, nohup) inherits SIGINT ignored, and so
    would the grid: it would rightly run on through Ctrl-C, as a nohup'd grid should. Any
    handler here becomes the default action in a child after exec, whichever tests ran before.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def grid_with_a_record(out, timeout=240):
    """A 2-worker grid started as from a terminal (its own session), once its first record has
    landed: (the process, its worker processes)."""
    # the tiny profile: a few seconds a run, so that records land while the grid is running
    with ctrl_c_as_in_a_terminal():
        grid = subprocess.Popen(
            [sys.executable, "-m", "cbam_tutorial", "ablate", "--grid", "all", "--seeds", "2", "--profile", "tiny",
             "--workers", "2", "--out", str(out)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "CBAM_TUTORIAL_FUSED": "0"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while not (out.exists() and read_ledger(out).records):
        assert grid.poll() is None, grid.communicate()
        assert time.time() < deadline, f"no record in {timeout} s"
        time.sleep(0.2)
    return grid, children_of(grid.pid)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_ctrl_c_stops_a_two_worker_grid_within_seconds_and_keeps_every_record(tmp_path):
    out = tmp_path / "grid.jsonl"
    grid, workers = grid_with_a_record(out)
    pressed = time.time()
    os.killpg(grid.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    _, stderr = grid.communicate(timeout=30)
    stopped = time.time() - pressed
    assert stopped < 10, f"took {stopped:.1f} s to stop"
    assert grid.returncode == 130
    assert "Run the same command again to resume" in stderr + _ and "Traceback" not in stderr
    time.sleep(0.5)
    assert not [pid for pid in workers if alive(pid)]
    ledger = read_ledger(out)
    assert ledger.set_aside == [] and len(ledger.records) >= 1


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from /proc")
def test_killing_the_parent_leaves_no_worker_behind(tmp_path):
    grid, workers = grid_with_a_record(tmp_path / "grid.jsonl")
    assert workers
    grid.kill()
    grid.communicate(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and [pid for pid in workers if alive(pid)]:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived its killed parent"


# --- corrupt and altered data caches ------------------------------------------------------------

@pytest.fixture
def cache_copy(tmp_path):
    """A private data folder holding a copy of the real cache (decoded from the archive once)."""
    real = data_module.load_cifar10()
    source = data_module._cache_path(data_module.data_root(), real.copy["source"])
    if real.copy["source"] != "jpeg-offline" or data_module.find_archive(data_module.data_root()) is None:
        pytest.skip("needs the offline archive to rebuild from")
    root = tmp_path / "data"
    root.mkdir()
    target = root / source.name
    target.write_bytes(source.read_bytes())
    return root, target


def test_a_corrupt_cache_is_named_and_rebuilt(cache_copy):
    root, cache = cache_copy
    cache.write_bytes(cache.read_bytes()[: 1 << 20])  # torn: the first megabyte only
    with pytest.warns(RuntimeWarning, match=f"the CIFAR-10 cache {cache} is not usable: it cannot be read"):
        data = data_module.load_cifar10(root)
    assert len(data.train_labels) == 50_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data_module.load_cifar10(root)  # rebuilt: sound now


def test_a_cache_with_altered_labels_is_noticed(cache_copy):
    root, cache = cache_copy
    with np.load(cache) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    labels = contents["train_labels"].copy()
    first, second = np.flatnonzero(labels == 0)[0], np.flatnonzero(labels == 1)[0]
    labels[[first, second]] = labels[[second, first]]  # still balanced: only the checksum can tell
    np.savez(cache, **{**contents, "train_labels": labels})
    with pytest.warns(RuntimeWarning, match="no longer match the checksum written with them"):
        data = data_module.load_cifar10(root)
    assert data.train_labels[first] == 0


def test_a_corrupt_cache_without_an_archive_says_both(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar10-jpeg-offline.npz").write_bytes(b"PK\x03\x04 torn")
    monkeypatch.delenv(data_module.ARCHIVE_ENV, raising=False)
    monkeypatch.setattr(data_module, "find_archive", lambda root=None, archive=None: None)
    with pytest.warns(RuntimeWarning, match="is not usable"):
        with pytest.raises(data_module.DataError, match="the cache .* is not usable and no offline CIFAR-10 archive"):
            data_module.load_cifar10(root, source="jpeg-offline")


# --- APIs that refuse nonsense -------------------------------------------------------------------

def test_grad_cam_refuses_nan_and_integer_images():
    from cbam_tutorial.attention_maps import extract_attention
    from cbam_tutorial.gradcam import grad_cam
    from cbam_tutorial.models import build_model

    model = build_model("resnet20", "cbam")
    nan = torch.randn(2, 3, 32, 32)
    nan[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"hold NaN or infinite values \(1 of 2 images\)"):
        grad_cam(model, nan)
    with pytest.raises(TypeError, match="torch.uint8, not floating point.*to_model_input"):
        grad_cam(model, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        extract_attention(model, np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError, match=r"must be a batch \(B, 3, H, W\)"):
        grad_cam(model, torch.randn(3, 32, 32))


@pytest.mark.parametrize("options, message", [
    ({"kernel_size": True}, "kernel_size must be a positive odd integer"),
    ({"reduction": True}, "reduction must be a positive integer, got True"),
    ({"reduction": 2.0}, "reduction must be a positive integer, got 2.0"),
])
def test_booleans_and_floats_are_not_numbers_of_channels_or_pixels(options, message):
    with pytest.raises(ValueError, match=message):
        build_attention("cbam", 64, **options)


def test_two_poolings_for_one_gate_are_refused():
    with pytest.raises(ValueError, match="was given two poolings, pooling='avg' and channel_pooling='max'"):
        build_attention("cam", 64, pooling="avg", channel_pooling="max")
    assert build_attention("cam", 64, pooling="max", channel_pooling="max").pooling == "max"  # the same: fine


def test_an_exercise_check_stops_a_forward_that_never_returns(monkeypatch):
    from torch import nn

    from cbam_tutorial import exercises
    from cbam_tutorial.exercises import harness

    monkeypatch.setattr(harness, "TIME_LIMIT", 1.0)

    class NeverReturns(nn.Module):
        def __init__(self, channels, reduction):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(channels, channels // reduction), nn.Linear(channels // reduction, channels)

        def forward(self, x):
            while True:
                try:
                    time.sleep(0.01)
                except Exception:  # a student's catch-all must not swallow the time limit
                    pass

    started = time.time()
    with pytest.raises(exercises.ExerciseError, match="your forward did not finish within 1 s, so it was stopped"):
        exercises.check_channel_attention(NeverReturns)
    assert time.time() - started < 10


def test_a_cache_made_from_another_archive_is_rebuilt(cache_copy, tmp_path, monkeypatch):
    root, _ = cache_copy
    real = data_module.load_cifar10(root)
    other = tmp_path / "other-archive.tar.gz"
    other.write_bytes(b"another archive")
    monkeypatch.delenv(data_module.ARCHIVE_ENV, raising=False)
    monkeypatch.setattr(data_module, "find_archive", lambda root=None, archive=None: other)
    monkeypatch.setattr(data_module, "read_image_folder_archive", lambda path: real)
    with pytest.warns(RuntimeWarning, match=f"it was made from another archive than {other}"):
        data_module.load_cifar10(root, source="jpeg-offline")


def test_an_empty_training_split_is_refused():
    small = synthetic_cifar10(train_per_class=400)  # all 400 per class go to the validation split
    with pytest.raises(ValueError, match="the training split is empty"):
        train("resnet20", None, profile="tiny", data=small, progress=False)


def test_a_grid_on_a_subset_of_the_training_split_records_its_size(tmp_path):
    """`ablate --train-subset N`: every run trains on N images, and the records say so
    (runs of another size are other runs: a different key)."""
    out = tmp_path / "sizes.jsonl"
    done = cli("ablate", "--grid", "headline", "--seeds", "1", "--profile", "tiny", "--train-subset", "256",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = read_records(out)
    assert [r["configuration"]["name"] for r in records] == ["baseline", "se", "cbam avg+max k=7"]
    assert {r["config"]["profile"]["train_subset"] for r in records} == {256}
    done = cli("ablate", "--grid", "headline", "--seeds", "1", "--profile", "tiny", "--train-subset", "0",
               "--out", str(out))
    assert done.returncode == 2 and "train_subset" in done.stderr


def test_a_grid_run_for_some_of_its_configurations(tmp_path):
    """`ablate --only`: the named configurations run, the others do not; an unknown name is
    refused before anything loads, with the grid's configurations."""
    out = tmp_path / "some.jsonl"
    done = cli("ablate", "--grid", "headline", "--seeds", "1", "--profile", "tiny", "--train-subset", "256",
               "--only", "cbam avg+max k=7", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [r["configuration"]["name"] for r in read_records(out)] == ["cbam avg+max k=7"]
    done = cli("ablate", "--grid", "headline", "--seeds", "1", "--profile", "tiny", "--only", "cam max",
               "--out", str(out))
    assert done.returncode == 2 and "its configurations: 'baseline', 'se', 'cbam avg+max k=7'" in done.stderr
