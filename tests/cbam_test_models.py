"""Small models with known answers, shared by several test files.

Imported by its own distinctive name (pytest puts tests/ on sys.path): a module path such
as `tests.test_gradcam` can be shadowed by another top-level `tests` package (IPython 7
installs one).
"""
import torch
from torch import nn


class QuadrantNet(nn.Module):
    """Class 1 is scored only from the top-left quadrant, class 0 only from the bottom-right.

    `features` puts the image's brightness of each quadrant into its own channel
    (B, 4, H, W); the head reads channel 0 for class 1 and channel 3 for class 0.
    """

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        masks = torch.zeros(4, size, size)
        half = size // 2
        masks[0, :half, :half] = masks[1, :half, half:] = masks[2, half:, :half] = masks[3, half:, half:] = 1
        self.register_buffer("masks", masks)
        self.features = nn.Identity()

    def forward(self, x):
        quadrants = self.features(x.mean(1, keepdim=True) * self.masks)  # (B, 4, H, W)
        pooled = quadrants.mean(dim=(2, 3))
        return torch.stack([pooled[:, 3], pooled[:, 0]], dim=1)


def synthetic_cifar10(train_per_class: int = 600, test_per_class: int = 20, seed: int = 0):
    """A small, balanced stand-in for CIFAR-10 (random pixels) for tests of the machinery,
    not of learning: (train_per_class x 10) training and (test_per_class x 10) test images."""
    import numpy as np

    from cbam_tutorial.data import Cifar10

    rng = np.random.default_rng(seed)

    def part(per_class):
        labels = np.repeat(np.arange(10), per_class)
        return rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), labels

    return Cifar10(*part(train_per_class), *part(test_per_class), copy={"source": "synthetic"})
