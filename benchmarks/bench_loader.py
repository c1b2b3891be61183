"""The tensor-resident loader against a conventional torchvision DataLoader, side by side.

    python benchmarks/bench_loader.py [--batches 80] [--steps 20] [--workers 2]

Both produce the same augmentation (random crop with 4-pixel zero padding, horizontal
flip, normalisation) of CIFAR-10's training split in batches of 256:
- conventional: a Dataset handing out PIL images, torchvision transforms per image
  (RandomCrop, RandomHorizontalFlip, ToTensor, Normalize), DataLoader with worker processes;
- this package: TensorLoader (the split as one uint8 tensor, whole-batch tensor operations).
Prints batches per second of each loader alone, and training images per second of
ResNet-20 with CBAM (bf16 autocast where supported, channels_last) fed by each.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cbam_tutorial.allocator import keep_freed_memory
from cbam_tutorial.data import MEAN, STD, load_cifar10
from cbam_tutorial.loader import TensorLoader
from cbam_tutorial.models import build_model
from cbam_tutorial.loop import autocast
from cbam_tutorial.devices import choose_precision


class PILDataset(Dataset):
    """CIFAR-10 images as PIL images, transformed one at a time (the usual recipe)."""

    def __init__(self, images, labels):
        from PIL import Image

        self.images, self.labels, self.to_pil = images, labels, Image.fromarray
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(self.to_pil(self.images[index])), int(self.labels[index])


def batches_per_second(batches, count: int) -> float:
    iterator = iter(batches)
    next(iterator)  # start-up (worker processes, first batch) is not timed
    started = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - started)


def training_images_per_second(batches, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    model = build_model("resnet20", "cbam").to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    iterator = iter(batches)
    seen, started = 0, None
    for step in range(steps + 3):
        if step == 3:  # warm-up steps are not timed
            started, seen = time.perf_counter(), 0
        images, labels = next(iterator)
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast(torch.device("cpu"), precision):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=80, help="batches timed for the loaders alone (after the first)")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per loader")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    args = parser.parse_args()
    keep_freed_memory()
    train, _ = load_cifar10().split()
    precision = choose_precision(torch.device("cpu"))

    def conventional():
        return DataLoader(PILDataset(train.images, train.labels), batch_size=256, shuffle=True,
                          num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0)

    def resident():
        loader = TensorLoader(train.images, train.labels, 256, train=True, seed=0)
        return (batch for epoch in range(1000) for batch in loader.epoch(epoch))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {precision}, "
          f"DataLoader workers {args.workers}")
    rate_conventional = batches_per_second(conventional(), args.batches)
    rate_resident = batches_per_second(resident(), args.batches)
    print(f"loader alone, batches of 256 per second: DataLoader+PIL {rate_conventional:.1f}, "
          f"TensorLoader {rate_resident:.1f}, ratio {rate_resident / rate_conventional:.1f}x")
    images_conventional = training_images_per_second(conventional(), args.steps, precision)
    images_resident = training_images_per_second(resident(), args.steps, precision)
    print(f"ResNet-20 + CBAM training, images per second: DataLoader+PIL {images_conventional:.0f}, "
          f"TensorLoader {images_resident:.0f}, ratio {images_resident / images_conventional:.2f}x")


if __name__ == "__main__":
    main()
