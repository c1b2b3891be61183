"""CPU cost of CBAM: the module against timm's, and inside a ResNet-20 training step.

    python benchmarks/bench_attention.py [--threads 2] [--batch 256] [--repeats 10]
                                          [--sections modules arrangements resnet]

Prints, side by side in one run:
1. forward + backward of one CBAM module (this package's, fused and plain, and timm's
   CbamModule with the same weights) on channels_last tensors of shape 128x64x32x32 and
   128x256x8x8, in float32 and under bfloat16 autocast;
2. forward + backward of one CBAM module in each of the three arrangements, fused and
   plain, on the same shapes and precisions;
3. one training step (forward, backward, SGD update) of ResNet-20 with and without CBAM,
   batch 256, channels_last, in float32 and under bfloat16 autocast, and CBAM's overhead.
Figures are medians over repeats after warm-up: milliseconds per call.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from bench_networks import interleaved_times, medians_ms, paired_overhead, timed_precisions
from cbam_tutorial.allocator import keep_freed_memory
from cbam_tutorial.attention import CBAM
from cbam_tutorial.fused import load_extension
from cbam_tutorial.models import build_model


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def timm_twin(module: CBAM) -> nn.Module:
    """timm's CbamModule carrying the same weights as `module` (built timm-compatible)."""
    from timm.layers.cbam import CbamModule

    hidden = module.channel_attention.mlp[0].out_features
    twin = CbamModule(module.channels, rd_channels=hidden,
                      spatial_kernel_size=module.spatial_attention.kernel_size)
    mlp = module.channel_attention.mlp
    with torch.no_grad():
        twin.channel.fc1.weight.copy_(mlp[0].weight[:, :, None, None])
        twin.channel.fc2.weight.copy_(mlp[2].weight[:, :, None, None])
        twin.spatial.conv.conv.weight.copy_(module.spatial_attention.conv.weight)
    return twin


def module_step(module: nn.Module, x: torch.Tensor, precision: str):
    def step():
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = module(x)
        out.float().sum().backward()
    return step


def bench_modules(repeats: int, precisions: tuple) -> None:
    print("\n1. One CBAM module, forward + backward, channels_last (ms, median)")
    print(f"{'shape':>18} {'precision':>9} {'fused':>8} {'plain':>8} {'timm':>8} {'timm/fused':>10}")
    for shape in ((128, 64, 32, 32), (128, 256, 8, 8)):
        for precision in precisions:
            torch.manual_seed(0)
            ours = CBAM(shape[1], mlp_bias=False, map_order="mean-max", hidden_rounding="nearest")
            plain = CBAM(shape[1], mlp_bias=False, map_order="mean-max",
                         hidden_rounding="nearest", fused=False)
            plain.load_state_dict(ours.state_dict())
            twin = timm_twin(ours)
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            # under autocast the block's input comes from a bf16 convolution
            x = torch.randn(shape, dtype=dtype).to(memory_format=torch.channels_last)
            x.requires_grad_()
            fused_ms = median_ms(module_step(ours, x, precision), repeats)
            plain_ms = median_ms(module_step(plain, x, precision), repeats)
            timm_ms = median_ms(module_step(twin, x, precision), repeats)
            print(f"{'x'.join(map(str, shape)):>18} {precision:>9} {fused_ms:8.2f} "
                  f"{plain_ms:8.2f} {timm_ms:8.2f} {timm_ms / fused_ms:9.2f}x")


def bench_arrangements(repeats: int, precisions: tuple) -> None:
    print("\n2. One CBAM module in each arrangement, forward + backward, channels_last (ms, median)")
    print(f"{'shape':>18} {'precision':>9} {'arrangement':>16} {'fused':>8} {'plain':>8} {'plain/fused':>11}")
    for shape in ((128, 64, 32, 32), (128, 256, 8, 8)):
        for precision in precisions:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            x = torch.randn(shape, dtype=dtype).to(memory_format=torch.channels_last).requires_grad_()
            for arrangement in ("channel-spatial", "spatial-channel", "parallel"):
                torch.manual_seed(0)
                fused = CBAM(shape[1], arrangement=arrangement)
                plain = CBAM(shape[1], arrangement=arrangement, fused=False)
                plain.load_state_dict(fused.state_dict())
                fused_ms = median_ms(module_step(fused, x, precision), repeats)
                plain_ms = median_ms(module_step(plain, x, precision), repeats)
                print(f"{'x'.join(map(str, shape)):>18} {precision:>9} {arrangement:>16} {fused_ms:8.2f} "
                      f"{plain_ms:8.2f} {plain_ms / fused_ms:10.2f}x")


def training_step(model: nn.Module, batch: int, precision: str):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    images = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    return step


def bench_resnet(batch: int, repeats: int, precisions: tuple) -> dict:
    """Median step time of baseline, fused CBAM and plain CBAM, timed in turn (interleaved)
    so that drifts of the machine's speed hit all three alike."""
    print(f"\n3. ResNet-20 training step, batch {batch}, channels_last (ms, median of {repeats}, interleaved;"
          f" overheads paired by round, with 95% intervals)")
    print(f"{'precision':>9} {'baseline':>9} {'cbam fused':>11} {'overhead':>24} "
          f"{'cbam plain':>11} {'overhead':>24}")
    results = {}
    for precision in precisions:
        steps = {}
        for label, attention, fused in (("base", None, True), ("fused", "cbam", True),
                                        ("plain", "cbam", False)):
            torch.manual_seed(0)
            options = {"fused": fused} if attention else {}
            model = build_model("resnet20", attention, **options).to(memory_format=torch.channels_last)
            steps[label] = training_step(model.train(), batch, precision)
        times = interleaved_times(steps, repeats)
        ms = medians_ms(times)

        def overhead(label):
            median, low, high = paired_overhead(times, "base", label)
            return f"{median:7.1%} ({low:5.1%} to {high:5.1%})"
        print(f"{precision:>9} {ms['base']:9.1f} {ms['fused']:11.1f} {overhead('fused'):>24} "
              f"{ms['plain']:11.1f} {overhead('plain'):>24}")
        results[precision] = ms
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=256, help="ResNet-20 batch size (default 256)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per figure (default 20)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is (by default the benchmark, like the "
                             "training engine, keeps freed memory in the process)")
    parser.add_argument("--sections", nargs="+", default=["modules", "arrangements", "resnet"],
                        choices=["modules", "arrangements", "resnet"], help="what to measure (default all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = False if args.default_allocator else keep_freed_memory()
    if load_extension() is None:
        raise SystemExit("the fused kernels did not compile; see the warning above")
    print(f"torch {torch.__version__}, {args.threads} threads, "
          f"freed memory kept in the process: {kept}")
    precisions = timed_precisions()
    if "modules" in args.sections:
        bench_modules(args.repeats, precisions)
    if "arrangements" in args.sections:
        bench_arrangements(args.repeats, precisions)
    if "resnet" in args.sections:
        bench_resnet(args.batch, args.repeats, precisions)


if __name__ == "__main__":
    main()
