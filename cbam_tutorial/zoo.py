"""Trained models shared between chapters: trained once, then read from a checkpoint.

    model = trained_model("cbam")                       # the default profile and its network, seed 0
    model, result = trained_model("se", with_metrics=True)

A chapter that needs a trained network calls this; the first call trains (minutes on a
2-core CPU in the quick profile: results/chapter-timings.json times chapter 5's three) and
keeps `checkpoint.pt` and `metrics.json` under checkpoints/ in the data folder (see
settings); later calls, from any chapter, load them. An interrupted training resumes from
its last epoch (see train.train).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import nn

from .allocator import keep_freed_memory
from .data import data_root
from .devices import choose_device
from .profiles import choose_profile
from .result import TrainingResult
from .settings import current_settings
from .train import changed_settings, load_model, run_config, train


def checkpoint_dir(attention: str | None, profile: str, model_name: str, seed: int,
                   root: str | Path | None = None) -> Path:
    """Where a shared model is kept: root (default: the data folder's checkpoints/) / name."""
    root = Path(root) if root is not None else data_root() / "checkpoints"
    return root / f"{profile}-{model_name}-{attention or 'baseline'}-seed{seed}"


def trained_model(attention: str | None, profile: str | None = None, model_name: str | None = None,
                  seed: int = 0, root: str | Path | None = None, with_metrics: bool = False, data=None,
                  device: str | None = None, progress: bool | None = None):
    """A model trained by train() with a named profile, unchanged (so that the cache is
    keyed by profile, model, attention and seed alone); from its checkpoint when complete.

    Returns the model in eval mode, or (model, TrainingResult) with with_metrics=True.
    A training shows a progress bar when `progress` is True (None: as the settings decide),
    keeps freed memory in the process for speed, and logs its cost where the settings say.
    """
    chosen = choose_profile(profile, choose_device(device))
    model_name = model_name or chosen.model
    folder = checkpoint_dir(attention, chosen.name, model_name, seed, root)
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        _forget_if_stale(folder, run_config(model_name, attention, profile=chosen, seed=seed, device=device))
    if not metrics_path.is_file():
        settings = current_settings()
        keep_freed_memory()
        train(model_name, attention, profile=chosen.name, seed=seed, out_dir=folder, data=data,
              device=device, progress=settings.shows_progress() if progress is None else progress,
              cost_log=settings.train_log)
    model: nn.Module = load_model(folder, device)
    if not with_metrics:
        return model
    return model, TrainingResult.from_json(json.loads(metrics_path.read_text()), model)


def _forget_if_stale(folder: Path, config: dict) -> None:
    """Delete the shared model in `folder` when its run's settings are not `config`'s (a
    later version of the package changed the profile, say), with a warning: it is trained
    again instead of being returned as if it were the model asked for. Where it runs and
    which copy of CIFAR-10 it read do not count; an unreadable metrics.json counts as stale."""
    try:
        saved = json.loads((folder / "metrics.json").read_text()).get("config", {})
        changed = changed_settings(saved, config, ignore=("data_source", "device_type", "precision"))
        reason = f"was trained with other settings ({', '.join(changed)})"
    except (OSError, ValueError, AttributeError) as error:
        changed, reason = True, f"has an unreadable metrics.json ({error})"
    if changed:
        warnings.warn(f"the shared model in {folder} {reason}; training it again", stacklevel=3)
        for name in ("metrics.json", "checkpoint.pt"):
            (folder / name).unlink(missing_ok=True)
