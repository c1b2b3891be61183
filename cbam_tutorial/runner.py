"""Run a grid into a results file: resumable, in parallel, interruptible, and honest about failures.

    run_grid("pooling", seeds=3, profile="ablation", out="results/pooling.jsonl", workers=2)
    run_grid("all", seeds=10, profile="gpu", out="all-gpu.jsonl", ray="auto", ray_gpus=1)

Before any training the runner checks every setting, that the results file can be
written, and that no other runner is writing it (GridLock). It then trains every
(configuration, seed) whose key (ledger.run_key: every setting that changes the outcome)
the file does not hold yet, appending each record as soon as its run ends.

- Ctrl-C stops the grid within seconds: workers ignore the interrupt and are ended by the
  runner, every finished record is already in the file, and the message says how to resume.
- A worker notices when its parent is gone (killed) and exits, so none is left behind.
- A run that fails is reported and the grid goes on; at the end GridFailures lists them.

On one machine the runs go to worker processes; with `ray=ADDRESS` they go to a Ray cluster
as tasks (cluster.py), and this process still writes the file.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .grids import Config, expand_grid
from .ledger import GridLock, append_record, outcome_settings, read_ledger, record_key, run_key
from .storage import ensure_writable_file


class GridFailures(RuntimeError):
    """Some runs of a grid failed (the others were recorded); .failures lists (key, error)."""

    def __init__(self, failures: list[tuple[str, str]], out: Path):
        self.failures = failures
        lines = "\n".join(f"  {key}: {error}" for key, error in failures)
        super().__init__(f"{len(failures)} run(s) failed and were not recorded in {out}:\n{lines}\n"
                         "Fix the cause and run the same command again: finished runs are kept and skipped.")


def _train_one(config: Config, seed: int, profile: str, threads: int | None, overrides: dict) -> dict:
    """One run (in a worker process or in this one): train and return a plain record."""
    import torch

    from .train import train

    if threads:
        torch.set_num_threads(threads)
    result = train(attention=config.attention, profile=profile, seed=seed, progress=False,
                   attention_options=config.options, **overrides)
    # "config" stays the training settings; the grid's configuration is kept beside it
    return {**result.to_json(), "configuration": asdict(config), "seed": seed, "profile": profile}


def _planned_key(config: Config, seed: int, profile: str, overrides: dict, data_copy: dict, device) -> str:
    from .train import run_config

    fields = {k: v for k, v in overrides.items() if k not in ("data", "device")}  # profile fields only
    settings = run_config(attention=config.attention, profile=profile, seed=seed, device=device,
                          attention_options=config.options, data_source=data_copy.get("source"), **fields)
    return run_key(profile, config.name, seed, outcome_settings(settings, data_copy))


def run_grid(grid: str, seeds, profile: str, out: str | Path, workers: int = 1, trainer=_train_one,
             log=print, ray: str | None = None, ray_cpus: float = 2, ray_gpus: float = 0,
             ray_retries: int = 2, only=None, **overrides) -> list[dict]:
    """Run every missing (configuration, seed) of `grid` and append its record to `out`.

    only: run just these configurations of the grid (grids.expand_grid), e.g. to add seeds
    to the baseline and the configurations whose paired intervals are still wide.

    workers > 1 spreads the runs over that many processes, each with an equal share of the
    CPU threads. ray: the address of a Ray cluster ("auto", host:port, or "local" to start
    one here) whose tasks run the grid instead, each asking for ray_cpus CPUs (its torch
    threads) and ray_gpus GPUs, a dead worker's task retried ray_retries times.
    `overrides` replace fields of the profile (e.g. epochs=3); `data` (a loaded Cifar10)
    may be passed to skip loading it again. Returns the records of this grid's runs (made
    now or found in the file), not the file's other lines: one file may hold several grids,
    profiles or training-set sizes, and a summary must not mix them. Raises GridFailures
    after the grid if any run failed.
    """
    from .train import PROFILES, choose_device

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(map(repr, PROFILES))}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    runs = expand_grid(grid, seeds, only)
    device = choose_device(overrides.get("device"))
    out = ensure_writable_file(Path(out))
    with GridLock(out):
        if overrides.get("data") is None:  # loaded once: its copy keys the runs, in-process runs reuse it
            from .data import load_cifar10

            overrides = {**overrides, "data": load_cifar10()}
        data_copy = dict(overrides["data"].copy)
        # keying every run checks every setting of every run before any training
        planned = [(config, seed, _planned_key(config, seed, profile, overrides, data_copy, device))
                   for config, seed in runs]
        ledger = read_ledger(out)
        for line in ledger.report():
            log(line)
        done = {record_key(record) for record in ledger.records}
        todo = [run for run in planned if run[2] not in done]
        chosen = f" ({len({config.name for config, _ in runs})} of its configurations)" if only else ""
        log(f"{grid}{chosen}: {len(runs)} runs, {len(runs) - len(todo)} already in {out}, {len(todo)} to do")
        failures: list[tuple[str, str]] = []
        finished = []

        def record(key: str, result: dict) -> None:
            append_record(out, {**result, "key": key})
            finished.append(key)
            log(f"  done {key}")

        def failed(key: str, error: str) -> None:
            failures.append((key, error))
            log(f"  FAILED {key}: {error}")

        worker_overrides = {k: v for k, v in overrides.items() if k != "data"}  # workers load their own
        try:
            if ray is not None:
                from .cluster import run_on_ray

                run_on_ray(todo, ray, trainer, profile, worker_overrides, record, failed, ray_cpus, ray_gpus,
                           ray_retries)
            elif workers == 1:
                for config, seed, key in todo:
                    try:
                        result = trainer(config, seed, profile, None, overrides)
                    except Exception as error:  # reported, and the grid goes on
                        failed(key, f"{type(error).__name__}: {error}")
                        continue
                    record(key, result)
            else:
                threads = max(1, (os.cpu_count() or 1) // workers)
                _run_in_workers(todo, workers, threads, trainer, profile, worker_overrides, record, failed)
        except KeyboardInterrupt:
            log(f"\nInterrupted: {len(finished)} run(s) finished in this session are kept in {out} "
                f"({len(todo) - len(finished) - len(failures)} not run). Run the same command again to resume.")
            raise
    if failures:
        raise GridFailures(failures, out)
    planned_keys = {key for _, _, key in planned}
    return [record for record in read_ledger(out).records if record_key(record) in planned_keys]


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # the runner is gone (killed): nothing will read our results
            os._exit(1)


def _worker(tasks, results, parent: int, threads: int, trainer, profile: str, overrides: dict) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what Ctrl-C does
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    while (task := tasks.get()) is not None:
        index, config, seed = task
        try:
            results.put((index, True, trainer(config, seed, profile, threads, overrides)))
        except Exception as error:
            results.put((index, False, f"{type(error).__name__}: {error}"))


def _run_in_workers(todo, workers, threads, trainer, profile, overrides, on_result, on_failure) -> None:
    context = multiprocessing.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for index, (config, seed, _) in enumerate(todo):
        tasks.put((index, config, seed))
    for _ in range(workers):
        tasks.put(None)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(tasks, results, os.getpid(), threads, trainer, profile, overrides))
                 for _ in range(min(workers, len(todo)))]
    for process in processes:
        process.start()
    outstanding = set(range(len(todo)))
    try:
        while outstanding:
            try:
                index, ok, payload = results.get(timeout=0.5)
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    for index in sorted(outstanding):
                        on_failure(todo[index][2], "its worker process died (out of memory, or killed)")
                    return
                continue
            outstanding.discard(index)
            (on_result if ok else on_failure)(todo[index][2], payload)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
