"""A training run: resuming, checkpoints, results; its profile comes from profiles.py, its
device and precision from devices.py.

    result = train(attention="cbam", seed=0)                 # profile (and network) chosen for you
    result = train("fastnet", "cbam", profile="quick", out_dir="runs/cbam0")
    result.history         # one dict per epoch: losses, accuracies, learning rate, times
    result.test            # {"loss", "accuracy"} on the test set, measured once at the end

The loop itself (one epoch; evaluation with test-time augmentation) is in loop.py; this
module wraps it with what a run needs besides. The recipe, every piece a Profile field:
SGD with Nesterov momentum; a one-cycle learning rate (linear warm-up, then linear decay
to zero), set every step, biases optionally at a multiple of it; label smoothing; weight
decay on convolution and linear weights only; lookahead or an EMA of the weights;
translations and (alternating) flips of whole batches; progressive resizing; test-time
augmentation; channels_last; bf16 (or fp16 with a GradScaler) where the device computes
it fast. Layers set from data (FastNet's whitening stem) are fitted before training.

Choices (epochs, learning rate, ...) are made on a fixed validation split of the training
set; the test set is evaluated at the end, for reporting only (and, with test_curve=True,
after every epoch to draw an accuracy-against-time curve, which no choice is made on).

What surrounds a run is the caller's choice, never guessed here: a progress bar
(progress=True), a JSON-lines log of the run's cost (cost_log=path), and the process's
allocator (allocator.keep_freed_memory()). The command line, the grid runner and the
book's helpers make those choices from the settings (settings.Settings.shows_progress).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cost import count_flops, count_parameters
from .data import Cifar10, Split, load_cifar10
from .devices import choose_device, choose_precision
from .loader import TensorLoader
from .loop import TTA_VIEWS, Lookahead, evaluate, one_cycle_lr, train_one_epoch
from .models import PatchWhitening, build_model
from .profiles import NOT_OUTCOME, Profile, resolve_profile
from .provenance import loaded_code, provenance
from .result import TrainingResult
from .storage import ensure_writable_file, write_atomically


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_scale: float = 1.0) -> list[dict]:
    """The optimizer's four groups, each with its "lr_scale" (a multiple of the learning rate):

    weights: convolution and linear weights, with weight decay;
    scales: BatchNorm scales, no decay;
    shifts: the biases of BatchNorms whose scale is frozen (FastNet's own), the only part of
        such a normalisation that trains: bias_lr_scale times the learning rate, and
        weight_decay / bias_lr_scale, so that each step decays them as much as the weights;
    biases: every other bias (whitening stem, attention MLPs and convolutions), no decay.
    Every trainable parameter is in exactly one group; a frozen one (e.g. the whitening
    bias after its epochs) is included too, and SGD skips it while it has no gradient.
    """
    frozen_scale_shifts = {id(module.bias) for module in model.modules()
                           if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine
                           and not module.weight.requires_grad}
    groups = {"weights": [], "scales": [], "shifts": [], "biases": []}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad or name.endswith("bias"):
            kind = ("weights" if parameter.ndim > 1 else "shifts" if id(parameter) in frozen_scale_shifts
                    else "biases" if name.endswith("bias") else "scales")
            groups[kind].append(parameter)
    return [{"params": groups["weights"], "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": groups["scales"], "weight_decay": 0.0, "lr_scale": 1.0},
            {"params": groups["shifts"], "weight_decay": weight_decay / bias_lr_scale, "lr_scale": bias_lr_scale},
            {"params": groups["biases"], "weight_decay": 0.0, "lr_scale": 1.0}]


# the attention parameters of a run with seed s are drawn from a generator seeded s + this
ATTENTION_SEED_OFFSET = 1_000_003


def initial_model(model_name: str, attention: str | None, seed: int, model_options: dict | None = None,
                  attention_options: dict | None = None) -> nn.Module:
    """The network a run with `seed` starts from, with common random numbers.

    For one seed, every attention configuration starts from the same backbone weights
    (exactly those of the network without attention) and its attention parameters are drawn
    from a generator of their own: paired differences between configurations then measure
    the module, not the luck of the initialisation.
    """
    model_options, attention_options = dict(model_options or {}), dict(attention_options or {})
    torch.manual_seed(seed)
    backbone = build_model(model_name, None, **model_options)
    if attention is None:
        return backbone
    after_backbone = torch.random.get_rng_state()  # where every configuration leaves the generator
    model = build_model(model_name, attention, **model_options, **attention_options)
    missing, unexpected = model.load_state_dict(backbone.state_dict(), strict=False)
    if unexpected or any(".attention." not in f".{key}" for key in missing):
        raise RuntimeError(f"{model_name} with {attention} does not share its backbone's parameter names "
                           f"(unexpected {unexpected[:3]}, missing {missing[:3]}); common random numbers "
                           f"need the attention modules under an `attention` name")
    torch.manual_seed(seed + ATTENTION_SEED_OFFSET)
    for name, module in model.named_modules():
        if ".attention" in f".{name}" and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    torch.random.set_rng_state(after_backbone)
    return model


def fit_to_data(model: nn.Module, loader: TensorLoader, images: int = 5_000) -> None:
    """Fit the layers that are set from data rather than trained (models.PatchWhitening) on
    the first `images` training images, as the network sees them (normalised, not augmented)."""
    layers = [module for module in model.modules() if isinstance(module, PatchWhitening)]
    if layers:
        sample = loader.normalise(loader.images[:images, loader.padding:-loader.padding or None,
                                                loader.padding:-loader.padding or None]
                                  if loader.prepadded else loader.images[:images])
        for layer in layers:
            layer.fit(sample)


def downscaled(batches, size: int | None):
    """The (images, labels) batches with images resized to size x size (antialiased); as they
    are for size=None. Progressive resizing trains the first epochs on such cheaper batches."""
    for images, labels in batches:
        if size is not None:
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                               antialias=True, align_corners=False)
        yield images, labels


def _subset(split: Split, size: int | None, seed: int) -> Split:
    if size is None or size >= len(split):
        return split
    index = np.sort(np.random.default_rng(seed).permutation(len(split))[:size])
    return Split(split.images[index], split.labels[index])


def data_loaders(data: Cifar10, chosen: Profile, seed: int,
                 device: torch.device) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    """(train, validation, test) loaders of a run: the profile's training images (the
    45,000-image split, or all 50,000 with train_on="train+val"), augmented and shuffled
    by `seed`; the validation split and the test set, in order, 500 images a batch. The
    subsets a profile asks for are fixed samples, the same for every seed."""
    train_split, val_split = data.split()
    if chosen.train_on == "train+val":
        train_split = data.train_all()
    train_split = _subset(train_split, chosen.train_subset, seed=1)
    if len(train_split) == 0:
        raise ValueError("the training split is empty: this copy of CIFAR-10 has no training images beyond "
                         "the 5,000-image validation split; train on a complete copy or with train_on='train+val'")
    val_split = _subset(val_split, chosen.val_subset, seed=2)
    test_split = _subset(Split(data.test_images, data.test_labels), chosen.test_subset, seed=3)
    return (TensorLoader(train_split.images, train_split.labels, chosen.batch_size, True, device, seed,
                         padding=chosen.padding, pad_mode=chosen.pad_mode, flip=chosen.flip),
            TensorLoader(val_split.images, val_split.labels, 500, False, device),
            TensorLoader(test_split.images, test_split.labels, 500, False, device))


def weight_averages(model: nn.Module, chosen: Profile) -> tuple[nn.Module | None, Lookahead | None]:
    """(EMA, lookahead) of `model`'s weights as the profile asks (ema_decay,
    lookahead_every; at most one of them), None for each it does not ask for."""
    ema = lookahead = None
    if chosen.ema_decay is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(chosen.ema_decay), use_buffers=True)
    if chosen.lookahead_every is not None:
        lookahead = Lookahead(model)
    return ema, lookahead


def _save_atomically(payload: dict, path: Path) -> None:
    write_atomically(path, lambda handle: torch.save(payload, handle))


def _load_checkpoint(path: Path, config: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"the checkpoint {path} cannot be read ({error}); delete it to start "
                           f"this run afresh") from error
    changed = changed_settings(checkpoint.get("config", {}), config)
    if changed:
        raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); "
                         f"use another output folder or delete the checkpoint")
    return checkpoint


def _run_settings(config: dict) -> dict:
    """A run's config without the profile's fields that do not change training (its name,
    description, seeds; profiles.NOT_OUTCOME), so that a checkpoint still resumes after a
    later version of the code rewords a profile's description."""
    profile = {k: v for k, v in config.get("profile", {}).items() if k not in NOT_OUTCOME}
    return {**config, "profile": profile}


def changed_settings(saved: dict, config: dict, ignore: tuple = ()) -> list:
    """The settings (config keys, or "profile.<field>") in which two runs' configs differ,
    leaving out the profile's fields that do not change training and the keys in `ignore`."""
    saved, ours = _run_settings(saved), _run_settings(config)
    changed = []
    for key in sorted((set(saved) | set(ours)) - set(ignore)):
        if key == "profile":
            fields = set(saved["profile"]) | set(ours["profile"])
            changed += [f"profile.{f}" for f in sorted(fields) if saved["profile"].get(f) != ours["profile"].get(f)]
        elif saved.get(key) != ours.get(key):
            changed.append(key)
    return changed


def run_config(model_name: str | None = None, attention: str | None = None, *,
               profile: str | Profile | None = None,
               seed: int = 0, device: str | torch.device | None = None, precision: str = "auto",
               attention_options: dict | None = None, data_source: str | None = None,
               model_options: dict | None = None, **overrides) -> dict:
    """Every setting of a training run, resolved and checked as train() resolves it, without
    training: what a checkpoint must match to be resumed, and what a results file keys runs by."""
    device = device if isinstance(device, torch.device) else choose_device(device)
    chosen = resolve_profile(profile, device, overrides)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = {"model": model_name or chosen.model, "attention": attention,
              "attention_options": dict(attention_options or {}), "profile": dataclasses.asdict(chosen),
              "seed": seed, "precision": choose_precision(device, precision), "device_type": device.type,
              "data_source": data_source}
    config["profile"]["seeds"] = list(chosen.seeds)
    if model_options:  # only when given, so that the keys of earlier runs stay as they were
        config["model_options"] = dict(model_options)
    return config


def train(model_name: str | None = None, attention: str | None = None, *, profile: str | None = None,
          seed: int = 0, device: str | None = None, precision: str = "auto", data: Cifar10 | None = None,
          out_dir: str | Path | None = None, progress: bool = False, test_curve: bool = False,
          attention_options: dict | None = None, model_options: dict | None = None, on_epoch=None,
          cost_log: str | Path | None = None, **overrides) -> TrainingResult:
    """Train `model_name` with `attention` on CIFAR-10.

    Args:
        model_name: one of models.MODEL_NAMES (default: the profile's model).
        attention: None, "se", "cbam", "cam" or "sam"; attention_options go to its modules.
        model_options: arguments of the network itself (e.g. FastNet's whitening=False).
        profile: a name of profiles.PROFILES (default: profiles.choose_profile) or a
            Profile; `overrides` replace single fields of it, e.g. epochs=3.
        seed: fixes initial weights, batch order and augmentation.
        device, precision: "auto" by default (see devices.choose_device, choose_precision).
        data: a loaded Cifar10 (default: load_cifar10()).
        out_dir: where to keep checkpoint.pt (written after every epoch) and metrics.json;
            a run started again with the same out_dir and settings resumes from its last
            completed epoch.
        test_curve: also measure test accuracy after every epoch (for a curve only).
        on_epoch: called with each epoch's record (a dict) after it is saved; returning False
            stops training there (the result then covers the epochs done, and
            result.stopped_early is True).
        progress: draw a progress bar (tqdm) over the epochs.
        cost_log: a JSON-lines file to append one line of the run's cost to (what ran,
            images seen, FLOPs per image, seconds); benchmarks/time_chapters.py reads it.

    Returns a TrainingResult: the settings, provenance, history, final validation and test
    evaluations and the trained model (in eval mode).
    """
    device = choose_device(device)
    loaded_code()  # the commit of the code this process runs, read before it trains (kept)
    # every setting is checked before the data are loaded or anything is trained
    chosen = resolve_profile(profile, device, overrides)
    config = run_config(model_name, attention, profile=chosen, seed=seed, device=device, precision=precision,
                        attention_options=attention_options, model_options=model_options)
    data = data if data is not None else load_cifar10()
    config["data_source"] = data.copy.get("source")
    precision, model_name, attention_options = config["precision"], config["model"], config["attention_options"]

    holdout = chosen.train_on == "train"  # "train+val" leaves no held-out validation images
    train_loader, val_loader, test_loader = data_loaders(data, chosen, seed, device)

    model = initial_model(model_name, attention, seed, config.get("model_options", {}), attention_options)
    parameters, flops = count_parameters(model), count_flops(model)
    model = model.to(device).to(memory_format=torch.channels_last)
    fit_to_data(model, train_loader)
    optimizer = torch.optim.SGD(parameter_groups(model, chosen.weight_decay, chosen.bias_lr_scale),
                                lr=chosen.lr, momentum=chosen.momentum, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    ema, lookahead = weight_averages(model, chosen)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=chosen.label_smoothing)
    # everything a checkpoint keeps besides the history, so that a resumed run continues exactly
    trained_state = {"model": model, "optimizer": optimizer, "scaler": scaler, "ema": ema,
                     "lookahead": lookahead}

    out_dir = Path(out_dir) if out_dir is not None else None
    checkpoint_path = out_dir / "checkpoint.pt" if out_dir else None
    history, start_epoch = [], 0
    if out_dir is not None:
        for name in ("checkpoint.pt", "metrics.json"):  # before training, not after the first epoch
            ensure_writable_file(out_dir / name)
        checkpoint = _load_checkpoint(checkpoint_path, config)
        if checkpoint is not None:
            for name, part in trained_state.items():
                if part is not None:
                    part.load_state_dict(checkpoint[name])
            history, start_epoch = checkpoint["history"], checkpoint["epoch"] + 1

    total_steps = chosen.epochs * len(train_loader)

    def learning_rate(step: int) -> float:
        return one_cycle_lr(step, total_steps, chosen.lr, chosen.warmup_fraction,
                            chosen.lr_start_fraction, chosen.lr_end_fraction)

    def after_step(step: int) -> None:
        if ema is not None:
            ema.update_parameters(model)
        if lookahead is not None and (step + 1) % chosen.lookahead_every == 0:
            lookahead.update(model, chosen.lookahead_decay * ((step + 1) / total_steps) ** 3)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=chosen.epochs, initial=start_epoch, desc=f"{model_name}+{attention or 'none'}",
                   unit="epoch")
    trained_seconds = history[-1]["train_seconds"] if history else 0.0
    stopped_early = False
    try:
        for epoch in range(start_epoch, chosen.epochs):
            if chosen.whitening_bias_epochs is not None:
                for stem in (m for m in model.modules() if isinstance(m, PatchWhitening)):
                    stem.bias.requires_grad_(epoch < chosen.whitening_bias_epochs)
            started = time.perf_counter()
            size = chosen.low_resolution if epoch < chosen.low_resolution_epochs else None
            batches = downscaled(train_loader.epoch(epoch), size)
            measured = train_one_epoch(model, batches, optimizer, loss_fn, learning_rate,
                                       epoch * len(train_loader), precision,
                                       scaler if precision == "fp16" else None, after_step)
            if lookahead is not None and epoch + 1 == chosen.epochs:
                lookahead.update(model, 1.0)  # the model leaves training with the slow weights
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_seconds = time.perf_counter() - started
            trained_seconds += epoch_seconds
            evaluated = ema.module if ema is not None else model
            val = (evaluate(evaluated, val_loader, precision, chosen.tta) if holdout
                   else {"loss": None, "accuracy": None})
            record = {"epoch": epoch + 1, "lr": learning_rate(min((epoch + 1) * len(train_loader),
                                                                  total_steps) - 1),
                      "train_loss": measured["loss"], "train_accuracy": measured["accuracy"],
                      "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                      "epoch_seconds": epoch_seconds, "train_seconds": trained_seconds}
            if test_curve:
                record["test_accuracy"] = evaluate(evaluated, test_loader, precision, chosen.tta)["accuracy"]
            history.append(record)
            if checkpoint_path is not None:
                state = {name: part.state_dict() if part is not None else None
                         for name, part in trained_state.items()}
                _save_atomically({**state, "epoch": epoch, "history": history, "config": config},
                                 checkpoint_path)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=val["accuracy"])
            if on_epoch is not None and on_epoch(dict(record)) is False:
                stopped_early = epoch + 1 < chosen.epochs
                break
    except KeyboardInterrupt:
        done = len(history)
        where = f"; run it again with the same output folder to resume from epoch {done + 1}" if out_dir else ""
        print(f"\nInterrupted after {done} complete epoch(s){where}.", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()

    evaluated = ema.module if ema is not None else model
    # the last epoch's validation scored these very weights: its figures, not a second pass
    final_val = {"loss": history[-1]["val_loss"], "accuracy": history[-1]["val_accuracy"]} if holdout else None
    result = TrainingResult(
        config=config,
        provenance={**provenance(device), "threads": torch.get_num_threads()},
        data=dict(data.copy),
        parameters=parameters,
        flops=flops,
        history=history,
        val=final_val,
        test=evaluate(evaluated, test_loader, precision, chosen.tta),
        train_seconds=trained_seconds,
        stopped_early=stopped_early,
        model=evaluated.eval(),
    )
    if out_dir is not None:
        write_metrics(result, out_dir / "metrics.json")
    if cost_log is not None:
        epochs = len(history)
        # validation after every epoch, the test set at the end (and after every epoch for a curve)
        evaluated = (epochs * len(val_loader.labels) if holdout else 0) + \
            (epochs + 1 if test_curve else 1) * len(test_loader.labels)
        _log_training(result, epochs * len(train_loader) * chosen.batch_size, evaluated,
                      TTA_VIEWS[chosen.tta], Path(cost_log))
    return result


def _log_training(result: TrainingResult, train_images: int, evaluated_images: int, views: int,
                  path: Path) -> None:
    """One line of the cost log: what the run trained on and evaluated (each evaluated image
    passes `views` times through the network), for chapter timings."""
    line = {"model": result.config["model"], "attention": result.config["attention"],
            "profile": result.config["profile"]["name"], "epochs": len(result.history),
            "train_images_seen": train_images, "evaluated_images": evaluated_images,
            "evaluation_views": views, "forward_flops_per_image": result.flops,
            "train_seconds": result.train_seconds}
    with open(path, "a") as log:
        log.write(json.dumps(line) + "\n")


def write_metrics(result: TrainingResult, path: Path) -> None:
    """The result without the model object, as JSON, written atomically."""
    text = json.dumps(result.to_json(), indent=2)
    write_atomically(path, lambda handle: handle.write(text.encode()))


def load_model(out_dir: str | Path, device: str | None = None) -> nn.Module:
    """Rebuild the model of a finished or interrupted run from its checkpoint (weights_only)."""
    path = Path(out_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint.pt in {out_dir}; train with out_dir={str(out_dir)!r} first")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint["config"]
    model = build_model(config["model"], config["attention"], **config.get("model_options", {}),
                        **config["attention_options"])
    state = checkpoint["ema"] if checkpoint.get("ema") else None
    if state is not None:
        state = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
    model.load_state_dict(state or checkpoint["model"])
    return model.to(choose_device(device)).eval()
