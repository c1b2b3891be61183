"""Deletion and insertion curves: does a saliency map point at the pixels the model uses?

Deletion (Petsiuk et al., 2018): remove the most salient pixels first, a growing fraction
at a time, and follow the probability of the explained class; a faithful map makes it
fall fast (small area under the curve). Insertion starts from a blurred image and puts
the most salient pixels back; a faithful map makes the probability rise fast (large area).

    curves = saliency_curves(model, x, maps, targets, mode="deletion")   # (B, steps + 1)
    area = curve_area(curves)                                           # (B,)

A random ordering of the pixels is the reference every map should beat: compare
`curve_area(saliency_curves(..., maps=random_maps(...)))` with the map's own area, since
raw areas also depend on how confident each model is.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .images import check_model_input
from .models import evaluation_mode

MODES = ("deletion", "insertion")


def blurred(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """A strong Gaussian blur of (B, C, H, W) images (reflect padding), the insertion start."""
    coordinates = torch.arange(kernel_size, dtype=images.dtype, device=images.device) - kernel_size // 2
    kernel = torch.exp(-coordinates**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, [kernel_size // 2] * 4, mode="reflect")
    horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def random_maps(images: torch.Tensor, seed: int = 0, resolution: int | None = None) -> torch.Tensor:
    """Uniform random saliency (B, H, W): the ordering a useless explanation would give.

    With `resolution` r, the random values are drawn on an r x r grid and upsampled
    bilinearly, so that the map has the blob-like structure of a Grad-CAM map from an
    r x r layer; per-pixel random orderings delete scattered pixels, which harms a network
    differently from deleting regions.
    """
    generator = torch.Generator().manual_seed(seed)
    batch, _, height, width = images.shape
    if resolution is None:
        return torch.rand(batch, height, width, generator=generator).to(images.device)
    coarse = torch.rand(batch, 1, resolution, resolution, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[:, 0].to(images.device)


def saliency_curves(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                    mode: str = "deletion", steps: int = 16) -> torch.Tensor:
    """Probability of `targets` as the top fractions 0, 1/steps, ..., 1 of pixels are changed.

    Args:
        images: (B, 3, H, W) model inputs; maps: (B, H, W) saliency, larger = more important.
        targets: (B,) class indices; mode: "deletion" (pixels set to 0, the data-set mean
            after standardisation) or "insertion" (pixels copied into a blurred image).
    Returns (B, steps + 1) probabilities, column 0 before any change.
    """
    check_model_input(images)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose 'deletion' or 'insertion'")
    batch, _, height, width = images.shape
    if maps.shape != (batch, height, width):
        raise ValueError(f"maps must have shape {(batch, height, width)} to match the images, "
                         f"got {tuple(maps.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    # rank 0 = most salient pixel; ties broken by position so the order is deterministic
    order = maps.reshape(batch, -1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(height * width, device=order.device).expand(batch, -1))
    rank = rank.view(batch, 1, height, width)
    start, end = (images, torch.zeros_like(images)) if mode == "deletion" else (blurred(images), images)
    curves = []
    with evaluation_mode(model), torch.no_grad():
        for step in range(steps + 1):
            changed = rank < round(step / steps * height * width)  # (B, 1, H, W)
            probabilities = model(torch.where(changed, end, start)).float().softmax(1)
            curves.append(probabilities.gather(1, targets.view(-1, 1))[:, 0])
    return torch.stack(curves, dim=1)


def curve_area(curves: torch.Tensor) -> torch.Tensor:
    """Area under (B, steps + 1) curves over fractions 0..1, by the trapezoid rule: (B,)."""
    steps = curves.shape[1] - 1
    return torch.trapezoid(curves, dx=1.0 / steps, dim=1)
