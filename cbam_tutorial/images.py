"""Conversions between stored images and model inputs.

    x = to_model_input(data.test_images[:8])     # (8, 3, 32, 32) float32, standardised
    pictures = to_display(x)                     # (8, 32, 32, 3) float in [0, 1] for imshow
"""
from __future__ import annotations

import numpy as np
import torch

from .data import MEAN, STD


def to_model_input(images, device="cpu") -> torch.Tensor:
    """uint8 (B, H, W, 3) (numpy or tensor) -> float32 (B, 3, H, W), standardised per channel."""
    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images of shape (B, H, W, 3), got {tuple(images.shape)} "
                         f"{images.dtype}; pass e.g. data.test_images[:8]")
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = images.permute(0, 3, 1, 2).float().div(255)
    return ((x - mean) / std).to(device)


def check_model_input(images, name: str = "images") -> torch.Tensor:
    """Refuse what a model cannot explain: not a (B, 3, H, W) floating-point tensor, or one
    holding NaN or infinity (which would give all-zero maps and NaN probabilities)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W), got {type(images).__name__}; "
                        "convert stored uint8 images with to_model_input(...)")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be a batch (B, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} are {images.dtype}, not floating point: models take standardised float "
                        "images; convert stored uint8 images with to_model_input(...)")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise ValueError(f"{name} hold NaN or infinite values ({bad} of {len(images)} images); "
                         "check how they were made (e.g. a division by a zero standard deviation)")
    return images


def to_display(x: torch.Tensor) -> np.ndarray:
    """Standardised (B, 3, H, W) -> (B, H, W, 3) float in [0, 1], the inverse of to_model_input."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x.detach() * std + mean).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
