"""Grids on Ray: a local Ray instance started by the test runs the tasks; the driver writes
the same ledger as the local runner, resumes it, and reports a run that raises or dies."""
import os
import sys

import pytest

from cbam_tutorial.data import load_cifar10
from cbam_tutorial.ledger import read_ledger
from cbam_tutorial.runner import GridFailures, _train_one, run_grid
from cbam_tutorial.settings import current_settings, environment_of

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

TINY = dict(profile="tiny", seeds=1)


@pytest.fixture(scope="module")
def cifar10():
    return load_cifar10()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": environment_of(current_settings())})
    # the trainers below live in this test module, which Ray's workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def test_a_grid_on_ray_matches_the_local_runner_and_resumes(local_ray, cifar10, tmp_path):
    on_ray, local = tmp_path / "ray.jsonl", tmp_path / "local.jsonl"
    lines = []
    # two configurations, two tasks side by side on the two CPUs
    two = dict(TINY, only=["baseline", "cam avg+max"])
    records = run_grid("pooling", out=on_ray, ray="local", ray_cpus=1, data=cifar10, log=lines.append, **two)
    assert "pooling (2 of its configurations): 2 runs, 0 already in" in lines[0] and len(records) == 2
    assert {r["configuration"]["name"] for r in records} == {"baseline", "cam avg+max"}
    run_grid("pooling", out=local, data=cifar10, log=lambda line: None, **two)
    assert {r["key"] for r in records} == {r["key"] for r in read_ledger(local).records}
    # the same training, wherever it ran: same settings and same accuracy per run
    by_key = {r["key"]: r for r in read_ledger(local).records}
    for record in records:
        assert record["config"] == by_key[record["key"]]["config"]
        assert record["test"]["accuracy"] == pytest.approx(by_key[record["key"]]["test"]["accuracy"], abs=0.02)
    lines.clear()
    run_grid("pooling", out=on_ray, ray="local", data=cifar10, log=lines.append, **two)
    assert "2 already in" in lines[0] and "0 to do" in lines[0]
    assert len(read_ledger(on_ray).records) == 2 and read_ledger(on_ray).set_aside == []


def troubled_trainer(config, seed, profile, threads, overrides):
    if config.name == "cam avg":
        raise RuntimeError("the loss diverged")
    if config.name == "cam max":
        os._exit(1)  # the worker process dies, as on a lost node or out of memory
    return _train_one(config, seed, profile, threads, overrides)


def test_a_run_that_raises_or_dies_is_reported_and_the_rest_are_kept(local_ray, cifar10, tmp_path):
    out = tmp_path / "grid.jsonl"
    with pytest.raises(GridFailures) as failure:
        run_grid("pooling", out=out, ray="local", ray_cpus=1, ray_retries=1, trainer=troubled_trainer,
                 data=cifar10, log=lambda line: None, **TINY)
    reasons = dict(failure.value.failures)
    assert len(reasons) == 2
    assert any("RuntimeError: the loss diverged" in reason for reason in reasons.values())
    assert any("after 1 retries" in reason for reason in reasons.values())
    kept = read_ledger(out)
    assert {r["configuration"]["name"] for r in kept.records} == {"baseline", "cam avg+max"}
    assert kept.set_aside == []  # no half-written line
