"""A training run: profiles, device and precision choice, resuming, checkpoints, results.

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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cost import count_flops, count_parameters
from .data import Cifar10, Split, load_cifar10
from .loader import TensorLoader
from .loop import TTA_MODES, Lookahead, evaluate, one_cycle_lr, train_one_epoch
from .models import PatchWhitening, build_model
from .provenance import loaded_code, provenance
from .settings import VARIABLES, current_settings
from .result import TrainingResult
from .storage import ensure_writable_file, write_atomically

PROFILE_ENV = VARIABLES["profile"]


@dataclass(frozen=True)
class Profile:
    """How much a run costs; every chapter's epochs, subset sizes and seeds come from here."""

    name: str
    description: str
    epochs: int
    batch_size: int
    lr: float  # peak of the one-cycle schedule
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.15
    # the schedule starts at lr_start_fraction * lr and ends at lr_end_fraction * lr
    lr_start_fraction: float = 0.0
    lr_end_fraction: float = 0.0
    train_subset: int | None = None  # images of the training split used; None for all
    val_subset: int | None = None
    test_subset: int | None = None  # None: the whole test set, as every reported number uses
    train_on: str = "train"  # "train" (45,000, validation held out) or "train+val" (50,000)
    ema_decay: float | None = None
    seeds: tuple = (0, 1, 2)
    model: str = "resnet20"  # default model for this profile
    # data augmentation (see loader.TensorLoader): translations of up to `padding` pixels,
    # with a black ("zeros") or mirrored ("reflect") border; "random" or "alternating" flips
    padding: int = 4
    pad_mode: str = "zeros"
    flip: str = "random"
    # test-time augmentation of every evaluation (loop.tta_logits)
    tta: str = "flip"
    # the learning rate of the biases of BatchNorms with frozen scales (FastNet's), as a
    # multiple of the others'; their weight decay is divided by it (see parameter_groups)
    bias_lr_scale: float = 1.0
    # train the whitening stem's bias (FastNet) for this many epochs, then freeze it; None:
    # train it throughout
    whitening_bias_epochs: int | None = None
    # lookahead (loop.Lookahead): every `lookahead_every` steps the weights are pulled to a
    # slow copy with decay lookahead_decay * (fraction of training done) ** 3; None: off
    lookahead_every: int | None = None
    lookahead_decay: float = 0.77
    # progressive resizing: the first `low_resolution_epochs` epochs see the augmented
    # batches downscaled to low_resolution x low_resolution (cheaper steps); the rest, and
    # every evaluation, the full 32 x 32
    low_resolution: int | None = None
    low_resolution_epochs: int = 0
    # what a chapter run under this profile does besides training its models: the profile of
    # its live mini ablation grids, and how many test images per class chapter 9 explains
    live_grid: str = "demo"
    faithfulness_per_class: int = 25
    timing_rounds: int = 10  # rounds of chapter 10's interleaved step timing

    def __post_init__(self) -> None:
        """Refuse settings that cannot train (checked on every construction and replace())."""
        def check(name, integer, valid, meaning, optional=False):
            value = getattr(self, name)
            if value is None and optional:
                return
            kinds = (int,) if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or value != value or not valid(value):
                kind = "an integer" if integer else "a number"
                raise ValueError(f"profile field {name} must be {kind} {meaning}"
                                 f"{' (or None)' if optional else ''}, got {value!r}")

        check("epochs", True, lambda v: v >= 1, "of at least 1")
        check("batch_size", True, lambda v: v >= 1, "of at least 1")
        check("lr", False, lambda v: 0 < v < float("inf"), "above 0")
        check("weight_decay", False, lambda v: 0 <= v < float("inf"), "of at least 0")
        check("momentum", False, lambda v: 0 <= v < 1, "in [0, 1)")
        check("label_smoothing", False, lambda v: 0 <= v < 1, "in [0, 1)")
        check("warmup_fraction", False, lambda v: 0 <= v <= 1, "in [0, 1]")
        check("lr_start_fraction", False, lambda v: 0 <= v <= 1, "in [0, 1]")
        check("lr_end_fraction", False, lambda v: 0 <= v <= 1, "in [0, 1]")
        check("train_subset", True, lambda v: v >= 1, "of at least 1", optional=True)
        check("val_subset", True, lambda v: v >= 1, "of at least 1", optional=True)
        check("test_subset", True, lambda v: v >= 1, "of at least 1", optional=True)
        check("timing_rounds", True, lambda v: v >= 1, "of at least 1")
        check("ema_decay", False, lambda v: 0 < v < 1, "in (0, 1)", optional=True)
        check("low_resolution", True, lambda v: 8 <= v <= 32, "from 8 to 32 pixels", optional=True)
        check("low_resolution_epochs", True, lambda v: 0 <= v <= self.epochs, "from 0 to epochs")
        check("faithfulness_per_class", True, lambda v: v >= 1, "of at least 1")
        if self.low_resolution_epochs and self.low_resolution is None:
            raise ValueError("low_resolution must be set (8 to 32 pixels) when low_resolution_epochs is set")
        check("padding", True, lambda v: 0 <= v <= 8, "from 0 to 8 pixels")
        check("bias_lr_scale", False, lambda v: 0 < v < float("inf"), "above 0")
        check("whitening_bias_epochs", True, lambda v: v >= 0, "of at least 0", optional=True)
        check("lookahead_every", True, lambda v: v >= 1, "of at least 1", optional=True)
        check("lookahead_decay", False, lambda v: 0 <= v < 1, "in [0, 1)")
        for name, choices in (("pad_mode", ("zeros", "reflect")), ("flip", ("random", "alternating")),
                              ("tta", TTA_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"profile field {name} must be one of {', '.join(map(repr, choices))}, "
                                 f"got {getattr(self, name)!r}")
        if self.ema_decay is not None and self.lookahead_every is not None:
            raise ValueError("choose ema_decay or lookahead_every, not both: each keeps its own average")
        if self.train_on not in ("train", "train+val"):
            raise ValueError(f"train_on must be 'train' or 'train+val', got {self.train_on!r}")

    def train_images(self) -> int:
        """Training images seen per epoch under this profile."""
        available = 50_000 if self.train_on == "train+val" else 45_000
        return min(available, self.train_subset or available)


# The fast recipe's settings (FastNet), shared by the profiles that use it. The learning
# rate and weight decay are per mean-loss step of 512 images; head_scale (FastNet) = 1/9.
FAST_RECIPE = dict(
    model="fastnet", batch_size=512, lr=0.75, lr_start_fraction=0.2, lr_end_fraction=0.07, momentum=0.85,
    weight_decay=1.3e-3, label_smoothing=0.2, warmup_fraction=0.23, padding=2, pad_mode="reflect",
    flip="alternating", tta="flip+translate", bias_lr_scale=64.0, lookahead_every=5,
    whitening_bias_epochs=3)

PROFILES = {
    "quick": Profile(
        "quick", "a chapter's training cell, sized for about a minute on a 2-core CPU: the fast recipe "
        "(FastNet) on a 10,000-image subset for 5 epochs, scored on 2,000 validation images",
        **FAST_RECIPE, epochs=5, train_subset=10_000, val_subset=2_000),
    "cpu": Profile(
        "cpu", "the fast recipe sized for 10 minutes of training on a 2-core CPU: FastNet (whitened "
        "stem, three residual stages) for 13 epochs on all 50,000 training images, batch 512, "
        "reflect-padded translations and alternating flips, label smoothing 0.2, biases at 64x "
        "the learning rate, lookahead, and flip-and-translate test-time augmentation",
        **FAST_RECIPE, epochs=13, train_on="train+val"),
    "cpu-resnet20": Profile(
        "cpu-resnet20", "the former cpu recipe, kept for comparison: ResNet-20 for 11 epochs on all "
        "50,000 images, the first 6 at 24 x 24 pixels (progressive resizing)",
        epochs=11, batch_size=256, lr=0.4, warmup_fraction=0.2, train_on="train+val",
        low_resolution=24, low_resolution_epochs=6),
    "grid": Profile(
        "grid", "one run of the book's reference grids, sized for a 2-core CPU: the cpu "
        "profile's recipe (FastNet for 13 epochs) on the 45,000-image training split, scored on the "
        "5,000-image validation split (for choices) and the test set (for the headline comparison)",
        **FAST_RECIPE, epochs=13),
    "ablation": Profile(
        "ablation", "one run of an ablation grid, sized for two minutes on a 2-core CPU: ResNet-20 on "
        "a 12,000-image subset for 5 epochs, scored on the full 5,000-image validation split",
        epochs=5, batch_size=256, lr=0.4, warmup_fraction=0.2, train_subset=12_000),
    "demo": Profile(
        "demo", "a live mini ablation grid inside a chapter on a 2-core CPU: ResNet-20 on 3,000 "
        "images for 2 epochs, scored on 2,000 validation images (a demonstration, not evidence)",
        epochs=2, batch_size=256, lr=0.2, train_subset=3_000, val_subset=2_000),
    "tiny": Profile(
        "tiny", "a smoke test of every chapter (CI, the Colab-like check): FastNet on 512 images "
        "for 1 epoch, scored on 1,000 test images; the numbers it gives mean nothing",
        **{**FAST_RECIPE, "batch_size": 256}, epochs=1, train_subset=512, val_subset=500,
        test_subset=1_000, live_grid="tiny", faithfulness_per_class=2, timing_rounds=2),
    "gpu": Profile(
        "gpu", "a chapter's training cell on a GPU (the default on CUDA, sized for a free Colab T4): "
        "the cpu profile's FastNet recipe for 13 epochs on the 45,000-image training split (the "
        "validation split held out); live grids use the ablation profile",
        **FAST_RECIPE, epochs=13, live_grid="ablation"),
    "gpu-resnet20": Profile(
        "gpu-resnet20", "the former gpu recipe, kept for comparison: ResNet-20 for 15 epochs on the "
        "45,000-image training split",
        epochs=15, batch_size=256, lr=0.4, warmup_fraction=0.2, live_grid="ablation"),
    "full": Profile(
        "full", "the complete recipe for a GPU: CIFAR ResNet-18 for 40 epochs on the 45,000-image "
        "training split, EMA of weights (not yet measured by this project; far too slow on a CPU)",
        epochs=40, batch_size=512, lr=0.4, ema_decay=0.999, model="resnet18", seeds=(0, 1, 2, 3, 4)),
}
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU; or the requested one, if it exists here."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {requested!r}; choose one of 'auto', 'cpu', 'cuda', 'mps'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available here; use 'auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple MPS is not available here; use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; choose one of 'auto', 'cpu', 'cuda', 'mps'")
    return device


def choose_profile(requested: str | None = None, device: torch.device | None = None) -> Profile:
    """The requested profile, else $CBAM_TUTORIAL_PROFILE, else "gpu" on CUDA and "quick" otherwise."""
    name = requested or current_settings().profile or (
        "gpu" if device is not None and device.type == "cuda" else "quick")
    if name not in PROFILES:
        source = "" if requested else f" (from ${PROFILE_ENV})"
        raise ValueError(f"unknown profile {name!r}{source}; choose one of {', '.join(map(repr, PROFILES))}")
    return PROFILES[name]


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_supports_bf16() -> bool:
    """True on GPUs that compute bf16 natively (compute capability 8.0 and later: A100, H100, ...).

    A T4 (7.5) answers torch.cuda.is_bf16_supported() with True because it can emulate bf16,
    slowly; here it counts as unsupported, so it trains in fp16 with a GradScaler.
    """
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """bf16 where the device computes it natively, fp16 on older GPUs, fp32 otherwise."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(map(repr, PRECISIONS))}")
    if requested == "fp16" and device.type == "cpu":
        warnings.warn("fp16 on a CPU is emulated and runs many times slower than bf16 or fp32; "
                      "use precision='auto' (bf16 where the CPU supports it) unless you are testing the "
                      "fp16 code path", RuntimeWarning, stacklevel=3)
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if cuda_supports_bf16() else "fp16"
    if device.type == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


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
    if checkpoint.get("config") != config:
        changed = sorted(k for k in set(config) | set(checkpoint.get("config", {}))
                         if config.get(k) != checkpoint.get("config", {}).get(k))
        raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); "
                         f"use another output folder or delete the checkpoint")
    return checkpoint


def resolve_profile(profile: str | Profile | None, device: torch.device, overrides: dict) -> Profile:
    """The named (or chosen) profile with `overrides` replacing single fields, validated."""
    chosen = profile if isinstance(profile, Profile) else choose_profile(profile, device)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Profile)})
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; valid: "
                             f"{', '.join(f.name for f in dataclasses.fields(Profile))}")
        chosen = dataclasses.replace(chosen, **overrides)
    return chosen


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
        profile: a name of PROFILES (default: see choose_profile); `overrides` replace
            single fields of it, e.g. epochs=3.
        seed: fixes initial weights, batch order and augmentation.
        device, precision: "auto" by default (see choose_device, choose_precision).
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
    result = TrainingResult(
        config=config,
        provenance={**provenance(device), "threads": torch.get_num_threads()},
        data=dict(data.copy),
        parameters=parameters,
        flops=flops,
        history=history,
        val=evaluate(evaluated, val_loader, precision, chosen.tta) if holdout else None,
        test=evaluate(evaluated, test_loader, precision, chosen.tta),
        train_seconds=trained_seconds,
        stopped_early=stopped_early,
        model=evaluated.eval(),
    )
    if out_dir is not None:
        write_metrics(result, out_dir / "metrics.json")
    if cost_log is not None:
        _log_training(result, len(train_loader) * chosen.batch_size, len(val_loader.labels),
                      len(test_loader.labels), Path(cost_log))
    return result


def _log_training(result: TrainingResult, images_per_epoch: int, val_images: int, test_images: int,
                  path: Path) -> None:
    epochs = len(result.history)
    line = {"model": result.config["model"], "attention": result.config["attention"],
            "profile": result.config["profile"]["name"], "epochs": epochs,
            "train_images_seen": epochs * images_per_epoch, "evaluated_images": val_images + test_images,
            "forward_flops_per_image": result.flops, "train_seconds": result.train_seconds}
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
