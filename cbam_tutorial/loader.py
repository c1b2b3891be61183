"""A data loader that keeps the whole data set as one tensor on the training device.

No worker processes and no per-image PIL work: every batch is cut from the resident
uint8 tensor, augmented as a whole (random translation, horizontal flip), converted and
normalised in a few tensor operations.

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


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator,
                     flip: bool | torch.Tensor = True, prepadded: bool = False) -> torch.Tensor:
    """Random crop of the zero-padded image and, with probability 1/2, a left-right mirror.

    images: (B, H, W, C) uint8 -> (B, H, W, C). Each image gets its own window, drawn for
    the whole batch at once (the crops of torchvision's RandomCrop(H, padding) with fill 0,
    and its RandomHorizontalFlip). Both are one gather from the padded batch, with each
    pixel's 4 bytes (C = 4; RGB plus one padding byte) moved as a single int32.

    flip: True (each image mirrored with probability 1/2), False, or a (B,) bool tensor
    saying which images to mirror. prepadded: the images already carry `padding` pixels on
    every side (e.g. reflected once for the whole data set); the crops are then (B, H - 2p,
    W - 2p, C).
    """
    batch, height, width, channels = images.shape
    if images.dtype != torch.uint8 or channels > 4:
        raise ValueError(f"random_crop_flip takes (B, H, W, C <= 4) uint8 images, got "
                         f"{tuple(images.shape)} {images.dtype}")
    if channels < 4:
        packed = torch.nn.functional.pad(images, (0, 4 - channels))
        return random_crop_flip(packed, padding, generator, flip, prepadded)[..., :channels]
    device = images.device
    pixels = images.contiguous().view(torch.int32).view(batch, height, width)  # one int32 per pixel
    if prepadded:
        padded, height, width = pixels, height - 2 * padding, width - 2 * padding
    else:
        padded = torch.nn.functional.pad(pixels, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    shifts = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(device)
    rows = shifts[0, :, None] + torch.arange(height, device=device)  # (B, H)
    columns = torch.arange(width, device=device).expand(batch, width)  # (B, W)
    if isinstance(flip, torch.Tensor) or flip:
        mirrored = flip.to(device) if isinstance(flip, torch.Tensor) else (
            torch.rand(batch, generator=generator) < 0.5).to(device)
        columns = torch.where(mirrored[:, None], columns.flip(1), columns)
    columns = shifts[1, :, None] + columns
    flat = (rows[:, :, None] * padded_width + columns[:, None, :]).view(batch, -1)  # (B, H * W)
    cropped = torch.gather(padded.view(batch, -1), 1, flat)
    return cropped.view(batch, height, width).view(torch.uint8).view(batch, height, width, 4)


def _reflect_pad(images: torch.Tensor, padding: int) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, H + 2p, W + 2p, C), the border mirrored (in chunks: no float copy
    of the whole set)."""
    chunks = [torch.nn.functional.pad(chunk.permute(0, 3, 1, 2).float(), (padding,) * 4, mode="reflect")
              .to(torch.uint8).permute(0, 2, 3, 1) for chunk in images.split(4096)]
    return torch.cat(chunks).contiguous()


class TensorLoader:
    """Batches of a resident data set, augmented on the device.

    Args:
        images: (N, 32, 32, 3) uint8 (numpy or tensor), labels: (N,) integer.
        batch_size: images per batch; the last, smaller batch is dropped when training.
        train: shuffle and augment (translate, flip) when True.
        device: where the data live and batches are made.
        seed: with the epoch number, fixes order and augmentation.
        padding: translations of up to this many pixels (a random crop of the padded image).
        pad_mode: "zeros" (the padding is black, as torchvision's RandomCrop) or "reflect"
            (the border is mirrored once for the whole data set, so no black edges appear).
        flip: "random" (each image mirrored with probability 1/2 in every epoch) or
            "alternating" (a random half in the first epoch, then every image the other way
            round from the epoch before: no image is seen the same way twice in a row).
        channels_last: hand out batches in channels_last memory format.
    """

    def __init__(self, images, labels, batch_size: int, train: bool, device="cpu", seed: int = 0,
                 padding: int = 4, channels_last: bool = True, pad_mode: str = "zeros",
                 flip: str = "random") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if pad_mode not in ("zeros", "reflect"):
            raise ValueError(f"pad_mode must be 'zeros' or 'reflect', got {pad_mode!r}")
        if flip not in ("random", "alternating"):
            raise ValueError(f"flip must be 'random' or 'alternating', got {flip!r}")
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {tuple(images.shape)} {images.dtype}")
        self.device = torch.device(device)
        # kept as (N, H, W, 4): RGB plus a zero byte, so that a pixel moves as one int32
        # (random_crop_flip); a batch of it, permuted, is already channels_last
        self.images = torch.nn.functional.pad(images, (0, 1)).contiguous().to(self.device)
        self.prepadded = train and pad_mode == "reflect" and padding > 0
        if self.prepadded:
            if padding >= min(images.shape[1:3]):
                raise ValueError(f"reflect padding of {padding} pixels needs images larger than that")
            self.images = _reflect_pad(self.images, padding)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.batch_size, self.train, self.seed, self.padding = batch_size, train, seed, padding
        self.channels_last = channels_last
        self.flip = flip
        # which images the first epoch mirrors, under "alternating" (the others follow it)
        self.first_flips = torch.rand(len(self.labels), generator=torch.Generator().manual_seed(
            seed * 1_000_003 - 1)).lt(0.5).to(self.device)
        # (x - 255 mean) / (255 std) as x * scale + shift
        mean, std = torch.tensor(MEAN), torch.tensor(STD)
        self.scale = (1 / (std * 255)).to(self.device)
        self.shift = (-mean / std).to(self.device)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3 or 4) -> float32 (B, 3, H, W), standardised per channel."""
        rgb = images[..., :3].contiguous()  # drop the padding byte while still 1 byte a value
        out = torch.addcmul(self.shift, rgb.float(), self.scale).permute(0, 3, 1, 2)  # channels_last
        return out if self.channels_last else out.contiguous()

    def epoch(self, epoch: int = 0):
        """Yield (images (B, 3, H, W) float32, labels (B,) int64) for one pass."""
        generator = torch.Generator(device="cpu")
        generator.manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator).to(self.device) if self.train else None
        for index in range(len(self)):
            start = index * self.batch_size
            picked = order[start:start + self.batch_size] if self.train else slice(start, start + self.batch_size)
            if self.train:  # index_select copies whole rows, far faster than advanced indexing
                images, labels = self.images.index_select(0, picked), self.labels.index_select(0, picked)
            else:
                images, labels = self.images[picked], self.labels[picked]
            if self.train:
                flip = True if self.flip == "random" else self.first_flips[picked] ^ bool(epoch % 2)
                images = random_crop_flip(images, self.padding, generator, flip, self.prepadded)
            yield self.normalise(images), labels

    __iter__ = epoch
