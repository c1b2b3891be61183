"""A data loader that keeps the whole data set as one tensor on the training device.

No worker processes and no per-image PIL work: every batch is cut from the resident
uint8 tensor, augmented as a whole (random crop with zero padding, horizontal flip),
converted and normalised in a few tensor operations.

    loader = TensorLoader(split.images, split.labels, batch_size=256, train=True, seed=0)
    for epoch in range(epochs):
        for images, labels in loader.epoch(epoch):   # (B, 3, 32, 32) float, (B,) int64
            ...

An epoch's order and augmentations depend only on (seed, epoch), so a run resumed at
epoch e sees exactly the batches an uninterrupted run would have seen.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import MEAN, STD


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad by `padding` zero pixels and cut a random H x W window per image.

    images: (B, C, H, W) -> (B, C, H, W); the same crops as torchvision's
    RandomCrop(H, padding) with fill 0, drawn for the whole batch at once.
    """
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    shifts = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator,
                           device=generator.device).to(images.device)
    rows = shifts[0, :, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = shifts[1, :, None] + torch.arange(width, device=images.device)   # (B, W)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    # advanced indexing puts the indexed dims first: (B, H, W, C) -> back to (B, C, H, W)
    return padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2: (B, C, H, W) -> (B, C, H, W)."""
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(3), images)


class TensorLoader:
    """Batches of a resident data set, augmented on the device.

    Args:
        images: (N, 32, 32, 3) uint8 (numpy or tensor), labels: (N,) integer.
        batch_size: images per batch; the last, smaller batch is dropped when training.
        train: shuffle and augment (crop with `padding`, flip) when True.
        device: where the data live and batches are made.
        seed: with the epoch number, fixes order and augmentation.
        channels_last: hand out batches in channels_last memory format.
    """

    def __init__(self, images, labels, batch_size: int, train: bool, device="cpu", seed: int = 0,
                 padding: int = 4, channels_last: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {tuple(images.shape)} {images.dtype}")
        self.device = torch.device(device)
        self.images = images.permute(0, 3, 1, 2).contiguous().to(self.device)  # (N, 3, H, W) uint8
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.batch_size, self.train, self.seed, self.padding = batch_size, train, seed, padding
        self.channels_last = channels_last
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1) * 255

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float32 (B, 3, H, W), standardised per channel."""
        out = (images.float() - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def epoch(self, epoch: int = 0):
        """Yield (images (B, 3, H, W) float32, labels (B,) int64) for one pass."""
        generator = torch.Generator(device="cpu")
        generator.manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator).to(self.device) if self.train else None
        for index in range(len(self)):
            start = index * self.batch_size
            picked = order[start:start + self.batch_size] if self.train else slice(start, start + self.batch_size)
            images, labels = self.images[picked], self.labels[picked]
            if self.train:
                images = random_flip(random_crop(images, self.padding, generator), generator)
            yield self.normalise(images), labels

    __iter__ = epoch
