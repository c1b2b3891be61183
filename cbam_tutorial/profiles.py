"""Profiles: how much a training run costs and which recipe it follows.

A Profile holds every setting of a run besides the network and its attention: epochs,
batch, the learning-rate schedule, the pieces of the recipe (label smoothing, flips,
padding, lookahead or EMA, progressive resizing, test-time augmentation) and the subsets
seen. PROFILES names the book's ones ("quick" for a chapter's cell, "quick-fp32" for one on
a CPU without native bf16, "cpu" for the fast recipe on a 2-core CPU, "gpu" on CUDA, "grid"
for one run of a reference grid, ...); choose_profile picks one for a device,
resolve_profile applies single-field overrides.

    profile = choose_profile("quick")
    longer = resolve_profile("quick", torch.device("cpu"), {"epochs": 10})
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .devices import cpu_supports_bf16
from .loop import TTA_MODES
from .settings import VARIABLES, current_settings

PROFILE_ENV = VARIABLES["profile"]


# Profile fields that describe or schedule runs without changing their outcome: a results
# file's key (ledger) and a checkpoint's match (train) leave them out.
NOT_OUTCOME = ("name", "description", "seeds", "live_grid", "faithfulness_per_class", "timing_rounds")


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
    # multiple of the others'; their weight decay is divided by it (train.parameter_groups)
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

    def val_images(self) -> int:
        """Validation images scored after every epoch: none when training on train+val,
        else the profile's validation subset of the 5,000-image split."""
        if self.train_on == "train+val":
            return 0
        return min(5_000, self.val_subset or 5_000)

    def test_images(self) -> int:
        """Test images scored under this profile: its test subset, else all 10,000."""
        return min(10_000, self.test_subset or 10_000)


# The fast recipe's settings (FastNet), shared by the profiles that use it. The learning
# rate and weight decay are per mean-loss step of 512 images; head_scale (FastNet) = 1/9.
FAST_RECIPE = dict(
    model="fastnet", batch_size=512, lr=0.75, lr_start_fraction=0.2, lr_end_fraction=0.07, momentum=0.85,
    weight_decay=1.3e-3, label_smoothing=0.2, warmup_fraction=0.23, padding=2, pad_mode="reflect",
    flip="alternating", tta="flip+translate", bias_lr_scale=64.0, lookahead_every=5,
    whitening_bias_epochs=3)

PROFILES = {
    "quick": Profile(
        "quick", "a chapter's training cell on a 2-core CPU: the fast recipe (FastNet) on a "
        "10,000-image subset for 5 epochs, scored on 2,000 validation and 2,000 test images",
        **FAST_RECIPE, epochs=5, train_subset=10_000, val_subset=2_000, test_subset=2_000),
    # On a CPU without native bf16 (no AVX-512 BF16 or AMX) every step runs in fp32, several
    # times slower than the quick profile's bf16 steps (README.md, "Training"): the chapters'
    # cells train on a fraction of the data there, to stay within the book's time budget.
    # Batches of 128 give the recipe 36 steps: in batches of 512 the same images made 6,
    # too few for its warm-up, and the models stayed near chance (results/README.md).
    "quick-fp32": Profile(
        "quick-fp32", "a chapter's training cell on a CPU that computes bf16 only by emulation, "
        "where every step runs in fp32: the fast recipe (FastNet) on a 1,536-image subset for "
        "3 epochs in batches of 128, scored on 250 validation and 500 test images; live grids "
        "use the demo-fp32 profile (a demonstration of the method; the reference files carry "
        "the evidence)",
        **{**FAST_RECIPE, "batch_size": 128}, epochs=3, train_subset=1_536, val_subset=250,
        test_subset=500, live_grid="demo-fp32", faithfulness_per_class=10, timing_rounds=5),
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
        "images for 2 epochs, scored on 2,000 validation images (a demonstration, not evidence); "
        "its test score, which no chapter reads, on 2,000 test images",
        epochs=2, batch_size=256, lr=0.2, train_subset=3_000, val_subset=2_000, test_subset=2_000),
    "demo-fp32": Profile(
        "demo-fp32", "a live mini ablation grid inside a chapter on a CPU without native bf16 "
        "(fp32 steps): ResNet-20 on 1,024 images for 2 epochs, scored on 500 validation images (a "
        "demonstration, not evidence); its test score, which no chapter reads, on 500 test images",
        epochs=2, batch_size=256, lr=0.2, train_subset=1_024, val_subset=500, test_subset=500),
    "tiny": Profile(
        "tiny", "a smoke test of every chapter (CI, the Colab-like check): FastNet on 512 images "
        "for 1 epoch, scored on 128 validation and 128 test images with flipped views; the numbers "
        "it gives mean nothing",
        **{**FAST_RECIPE, "batch_size": 256, "tta": "flip"}, epochs=1, train_subset=512,
        val_subset=128, test_subset=128, live_grid="tiny", faithfulness_per_class=2, timing_rounds=2),
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


def default_profile_name(device: torch.device | None) -> str:
    """The chapters' profile for `device`: "gpu" on CUDA; on a CPU "quick" where it computes
    bf16 natively and "quick-fp32" where it would emulate it; "quick" elsewhere (MPS, or no
    device given)."""
    if device is not None and device.type == "cuda":
        return "gpu"
    if device is not None and device.type == "cpu" and not cpu_supports_bf16():
        return "quick-fp32"
    return "quick"


def choose_profile(requested: str | None = None, device: torch.device | None = None) -> Profile:
    """The requested profile, else $CBAM_TUTORIAL_PROFILE, else default_profile_name(device)."""
    name = requested or current_settings().profile or default_profile_name(device)
    if name not in PROFILES:
        source = "" if requested else f" (from ${PROFILE_ENV})"
        raise ValueError(f"unknown profile {name!r}{source}; choose one of {', '.join(map(repr, PROFILES))}")
    return PROFILES[name]


def resolve_profile(profile: str | Profile | None, device: torch.device, overrides: dict) -> Profile:
    """The named (or chosen) profile with `overrides` replacing single fields, validated.

    The description gains what the overrides changed (e.g. "...; run with epochs=15
    instead"), so that a results file's description never contradicts the fields it ran."""
    chosen = profile if isinstance(profile, Profile) else choose_profile(profile, device)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Profile)})
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; valid: "
                             f"{', '.join(f.name for f in dataclasses.fields(Profile))}")
        changed = {name: value for name, value in overrides.items()
                   if name not in ("name", "description") and getattr(chosen, name) != value}
        if changed and "description" not in overrides:
            listed = ", ".join(f"{name}={value!r}" for name, value in changed.items())
            overrides = {**overrides, "description": f"{chosen.description}; run with {listed} instead"}
        chosen = dataclasses.replace(chosen, **overrides)
    return chosen
