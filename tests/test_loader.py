"""The tensor loader's augmentations are real and reproducible."""
import numpy as np
import pytest
import torch

from cbam_tutorial.data import MEAN, STD
from cbam_tutorial.loader import TensorLoader, random_crop_flip


def numbered_images(n=64):
    """Images whose every pixel is distinct, so a crop's position can be read off."""
    values = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3)
    return (values % 251 + 1).astype(np.uint8)  # never 0, the padding value


def test_batches_shapes_types_and_range():
    images = numbered_images(100)
    loader = TensorLoader(images, np.arange(100) % 10, batch_size=32, train=True, seed=0)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 3  # the last partial batch is dropped in training
    x, y = batches[0]
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    low = min((0 - m * 255) / (s * 255) for m, s in zip(MEAN, STD))
    high = max((255 - m * 255) / (s * 255) for m, s in zip(MEAN, STD))
    assert low - 1e-5 <= x.min() and x.max() <= high + 1e-5


def test_evaluation_keeps_every_image_in_order_unchanged():
    images = numbered_images(70)
    loader = TensorLoader(images, np.arange(70) % 10, batch_size=32, train=False)
    xs = torch.cat([x for x, _ in loader.epoch(0)])
    # by hand: (pixel - 255 mean) / (255 std), channel first
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    expected = (torch.as_tensor(images).permute(0, 3, 1, 2).float() - mean) / std
    torch.testing.assert_close(xs, expected)


def test_crops_are_windows_of_the_padded_image_and_move_content():
    images = torch.as_tensor(numbered_images(64))  # (B, H, W, C)
    crops = random_crop_flip(images, 4, torch.Generator().manual_seed(0), flip=False)
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    shifts = []
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(crops[i], padded[i, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert len(set(shifts)) > 20  # windows vary across the batch
    assert sum(s != (4, 4) for s in shifts) > 50  # and most of them move the content
    assert (crops == 0).any()  # some padding comes into view


def test_flip_is_a_left_right_mirror():
    images = torch.as_tensor(numbered_images(64))
    flipped = random_crop_flip(images, 0, torch.Generator().manual_seed(1))  # no padding: no crop
    mirrored = [torch.equal(f, i.flip(1)) for f, i in zip(flipped, images)]  # W is dim 1 of (H, W, C)
    unchanged = [torch.equal(f, i) for f, i in zip(flipped, images)]
    assert all(m != u for m, u in zip(mirrored, unchanged))  # each image is one or the other
    assert 16 < sum(mirrored) < 48


def test_crop_and_flip_together_are_a_mirrored_window():
    images = torch.as_tensor(numbered_images(64))
    out = random_crop_flip(images, 4, torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    for i in range(len(images)):
        windows = [padded[i, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert sum(torch.equal(out[i], w) or torch.equal(out[i], w.flip(1)) for w in windows) == 1


def test_reproducible_under_a_seed_and_different_across_epochs():
    images, labels = numbered_images(128), np.arange(128) % 10
    a = TensorLoader(images, labels, batch_size=64, train=True, seed=3)
    b = TensorLoader(images, labels, batch_size=64, train=True, seed=3)
    for (xa, ya), (xb, yb) in zip(a.epoch(5), b.epoch(5)):
        torch.testing.assert_close(xa, xb)
        assert torch.equal(ya, yb)
    first = next(iter(a.epoch(0)))[0]
    other_epoch = next(iter(a.epoch(1)))[0]
    other_seed = next(iter(TensorLoader(images, labels, 64, True, seed=4).epoch(0)))[0]
    assert not torch.equal(first, other_epoch) and not torch.equal(first, other_seed)


def test_bad_loader_input():
    with pytest.raises(ValueError, match=r"images must be \(N, H, W, 3\) uint8"):
        TensorLoader(np.zeros((4, 3, 32, 32), np.uint8), np.zeros(4), 2, True)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        TensorLoader(np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3), 2, True)
