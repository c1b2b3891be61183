"""A grid's runs as tasks on a Ray cluster (the `ray` extra): run_grid(..., ray="ADDRESS").

    python -m cbam_tutorial ablate --grid all --seeds 10 --profile gpu --out results/all-gpu.jsonl \
        --ray auto --ray-gpus 1

Each (configuration, seed) becomes one Ray task that trains and returns its record; the
driver (this process) alone writes the results file, through the same ledger as the local
runner, so a record is appended whole when its task returns and a resumed grid skips it.
A task whose worker dies (a lost node, out of memory) is retried by Ray up to `retries`
times; one that raises, or dies once more, is reported as a failure and the grid goes on.
Ctrl-C cancels the tasks still running.

Every node needs the package installed (`pip install "cbam-tutorial[ray]"`) and CIFAR-10
where the settings say: the driver passes its CBAM_TUTORIAL_* settings to the tasks.
"""
from __future__ import annotations

from typing import Callable


def connect(address: str, settings_environment: dict) -> bool:
    """Join the cluster at `address` ("auto": the one this machine belongs to; host:port),
    or start a Ray instance on this machine for "local". Returns whether this call
    started Ray (and should shut it down)."""
    try:
        import ray
    except ImportError as error:
        raise ImportError('the Ray executor needs Ray: pip install "cbam-tutorial[ray]"') from error
    if ray.is_initialized():
        return False
    ray.init(address=None if address == "local" else address, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": settings_environment})
    return True


def run_on_ray(todo: list, address: str, trainer: Callable, profile: str, overrides: dict,
               on_result: Callable, on_failure: Callable, cpus: float = 1, gpus: float = 0,
               retries: int = 2) -> None:
    """Run every (config, seed, key) of `todo` as a Ray task calling
    trainer(config, seed, profile, threads, overrides); on_result(key, record) and
    on_failure(key, message) are called in this process as the tasks end."""
    import ray

    from .settings import current_settings, environment_of

    started = connect(address, environment_of(current_settings()))
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries)(trainer)
    threads = max(1, int(cpus))
    pending = {task.remote(config, seed, profile, threads, overrides): key for config, seed, key in todo}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for reference in done:
                key = pending.pop(reference)
                try:
                    record = ray.get(reference)
                except ray.exceptions.RayTaskError as error:  # the run itself raised
                    cause = getattr(error, "cause", None) or error
                    on_failure(key, f"{type(cause).__name__}: {cause}")
                except ray.exceptions.RayError as error:  # its worker died, after the retries
                    on_failure(key, f"{type(error).__name__} (after {retries} retries): {error}"[:500])
                else:
                    on_result(key, record)
    finally:
        for reference in pending:
            ray.cancel(reference, force=True)
        if started:
            ray.shutdown()
