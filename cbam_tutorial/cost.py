"""Parameters and FLOPs of a model, and the overhead of attention over the baseline.

FLOPs come from torch.utils.flop_counter.FlopCounterMode, which counts matrix
multiplications and convolutions (2 FLOPs per multiply-accumulate) and nothing else:
pooling, sigmoid and the gating multiplications are memory-bound and not counted. The
paper counts in its own way (3.858 GFLOPs for ResNet-50, where common counters give about
4.1 G multiply-accumulates), so compare overheads (differences), not absolute figures.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .loop import TTA_VIEWS
from .models import build_model, evaluation_mode


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """FLOPs of one forward pass in eval mode on a zero input of `input_size` (B, C, H, W)."""
    with evaluation_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_size))
    return counter.get_total_flops()


def model_cost(model: nn.Module, input_size=(1, 3, 32, 32)) -> dict:
    """{"parameters": int, "flops": int, "macs": int} for one input of `input_size`."""
    flops = count_flops(model, input_size)
    return {"parameters": count_parameters(model), "flops": flops, "macs": flops // 2}


def attention_overhead(name: str, attentions=(None, "se", "cbam"), input_size=None,
                       num_classes: int | None = None, **attention_options) -> list[dict]:
    """Cost of `name` with each attention, and its overhead over the first (the baseline).

    Returns one row per attention: attention, parameters, flops, macs, and
    parameter_overhead / flop_overhead as fractions of the baseline's figures.
    The input is (1, 3, 224, 224) for resnet50 and (1, 3, 32, 32) otherwise, unless given.
    """
    if input_size is None:
        input_size = (1, 3, 224, 224) if name == "resnet50" else (1, 3, 32, 32)
    if num_classes is None:
        num_classes = 1000 if name == "resnet50" else 10
    rows = []
    for attention in attentions:
        options = attention_options if attention is not None else {}
        model = build_model(name, attention, num_classes=num_classes, **options)
        rows.append({"attention": attention or "none", **model_cost(model, input_size)})
    base = rows[0]
    for row in rows:
        row["parameter_overhead"] = row["parameters"] / base["parameters"] - 1
        row["flop_overhead"] = row["flops"] / base["flops"] - 1
    return rows


# NVIDIA's stated peak dense tensor throughput (FLOP/s) in the precision each card trains in:
# a T4 (Colab's free tier) in fp16, an A100 and an H100 (SXM) in bf16.
T4_FP16_FLOPS = 65e12
GPU_PEAK_FLOPS = {"T4 (fp16)": T4_FP16_FLOPS, "A100 (bf16)": 312e12, "H100 SXM (bf16)": 989e12}


def run_flops(forward_flops_per_image: float, profile) -> float:
    """FLOPs of one training run under `profile` (a profiles.Profile).

    A training step costs about three forward passes (forward, and a backward that costs
    two); every evaluation runs the profile's test-time augmentation (TTA_VIEWS forward
    passes per image): the validation images after every epoch (none when training on
    train+val) and the test images (the profile's test subset, else the whole set) once at
    the end.
    """
    views = TTA_VIEWS[profile.tta]
    passes = 3 * profile.epochs * profile.train_images() + views * (profile.val_images() * profile.epochs
                                                                     + profile.test_images())
    return forward_flops_per_image * passes


def gpu_seconds_estimate(flops: float, peak_flops: float = T4_FP16_FLOPS, utilisation: float = 0.10) -> float:
    """An ESTIMATE, not a measurement: `flops` at `utilisation` of a GPU's stated peak."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation!r}")
    return flops / (peak_flops * utilisation)
