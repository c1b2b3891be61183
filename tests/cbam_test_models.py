"""Helpers shared by several test files: small models with known answers, stand-in data, and
a git snapshot of the working tree.

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


def snapshot_working_tree(root, destination, branch: str, message: str = "snapshot of the working tree"):
    """The working tree at `root` (uncommitted changes included, ignored files left out) as a
    fresh git repository at `destination` whose `branch` holds it: what the chapters' setup
    cell clones in the Colab tests."""
    import shutil
    import subprocess
    from pathlib import Path

    root, destination = Path(root), Path(destination)

    def git(*args, cwd):
        done = subprocess.run(["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost", *args],
                              cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, f"git {args} failed: {done.stderr}"
        return done.stdout

    for name in filter(None, git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=root).split("\0")):
        if (root / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, destination / name)
    git("init", "--quiet", "--initial-branch", branch, ".", cwd=destination)
    git("add", "--all", cwd=destination)
    git("commit", "--quiet", "-m", message, cwd=destination)
    return destination
