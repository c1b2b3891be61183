"""Training throughput of the book's networks on a CPU, with and without CBAM.

    python benchmarks/bench_networks.py [--threads 2] [--repeats 10] [--only fastnet]

Prints, side by side in one run: images per second of one training step (forward,
backward, Nesterov SGD update; channels_last) for ResNet-20 (batch 256) and FastNet
(batch 512), each without attention, with SE and with CBAM, in fp32 and under bf16
autocast, and CBAM's overhead against each network without attention. Steps of one
network and precision are timed in turn (interleaved) so that drifts of the machine's
speed hit every variant alike; figures are medians over repeats after warm-up.

It also prints the reference step, the figure that time budgets are scaled by: the
ResNet-20 step without attention, bf16, channels_last, batch 256 (160 ms on the machine
the `cpu` profile's 10-minute budget was set for; see train.reference_step_ms).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cbam_tutorial.allocator import keep_freed_memory
from cbam_tutorial.fused import load_extension
from cbam_tutorial.models import build_model

NETWORKS = {"resnet20": 256, "fastnet": 512}
ATTENTIONS = (None, "se", "cbam")
TARGET_OVERHEAD = {"resnet20": 0.15, "fastnet": 0.10}


def training_step(model: nn.Module, batch: int, precision: str):
    """A closure that runs one training step on a fixed random batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = nn.functional.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()
    return step


def interleaved_ms(steps: dict, repeats: int) -> dict:
    """Median milliseconds per call of each closure, timed in turn."""
    for step in steps.values():
        for _ in range(3):
            step()
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return {label: 1000 * statistics.median(values) for label, values in times.items()}


def bench(networks, repeats: int) -> dict:
    results = {}
    print(f"{'network':>9} {'batch':>5} {'precision':>9} " + " ".join(
        f"{str(a or 'none') + ' img/s':>11}" for a in ATTENTIONS) + f" {'cbam overhead':>14} {'target':>7}")
    for name in networks:
        batch = NETWORKS[name]
        for precision in ("fp32", "bf16"):
            steps = {}
            for attention in ATTENTIONS:
                torch.manual_seed(0)
                model = build_model(name, attention).to(memory_format=torch.channels_last).train()
                steps[attention] = training_step(model, batch, precision)
            ms = interleaved_ms(steps, repeats)
            overhead = ms["cbam"] / ms[None] - 1
            target = TARGET_OVERHEAD[name]
            print(f"{name:>9} {batch:5d} {precision:>9} " + " ".join(
                f"{1000 * batch / ms[a]:11.0f}" for a in ATTENTIONS)
                + f" {overhead:13.1%} {'<= ' + format(target, '.0%'):>7}"
                + ("" if overhead <= target else "  MISSED"))
            results[(name, precision)] = ms
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per figure (default 10)")
    parser.add_argument("--only", choices=sorted(NETWORKS), help="one network only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if load_extension() is None:
        raise SystemExit("the fused kernels did not compile; see the warning above")
    print(f"torch {torch.__version__}, {args.threads} threads; training step img/s (median of "
          f"{args.repeats}, interleaved)")
    results = bench([args.only] if args.only else list(NETWORKS), args.repeats)
    if ("resnet20", "bf16") in results:
        print(f"reference step (ResNet-20, no attention, bf16, batch 256): "
              f"{results[('resnet20', 'bf16')][None]:.0f} ms")


if __name__ == "__main__":
    main()
