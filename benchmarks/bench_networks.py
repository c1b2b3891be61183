"""Training throughput of the book's networks on a CPU, with and without CBAM.

    python benchmarks/bench_networks.py [--threads 2] [--repeats 10] [--only fastnet]
                                        [--arrangements]

Prints, side by side in one run: images per second of one training step (forward,
backward, Nesterov SGD update; channels_last) for ResNet-20 (batch 256) and FastNet
(batch 512), each without attention, with SE and with CBAM, in fp32 and under bf16
autocast, and CBAM's overhead against each network without attention. Steps of one
network and precision are timed in turn (interleaved) so that drifts of the machine's
speed hit every variant alike; figures are medians over repeats after warm-up. CBAM's
overhead is measured within each round (CBAM step / plain step - 1) and given as the
median over rounds with a distribution-free 95% interval: a target counts as met when the
whole interval is at or below it, MISSED when the whole interval is above it, and
UNRESOLVED otherwise (more --repeats, or a quieter machine).

With --arrangements it times only the network(s) with CBAM in each of the three
arrangements, on the fused CPU kernels and on plain PyTorch (the fused kernels' gain in a
whole training step).

Otherwise it then prints an ESTIMATE (no GPU measured here) of one run of the `gpu` profile on a T4,
an A100 and an H100 from the counted FLOPs and each card's stated peak at 10% and 30%
utilisation. It also prints the reference step, the figure that time budgets are scaled by: the
ResNet-20 step without attention, bf16, channels_last, batch 256 (160 ms on the machine
the `cpu` profile's 10-minute budget was set for; time_to_accuracy.py scales the budget by it).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from cbam_tutorial.allocator import keep_freed_memory
from cbam_tutorial.comparison import median_interval
from cbam_tutorial.fused import load_extension
from cbam_tutorial.cost import GPU_PEAK_FLOPS, count_flops, gpu_seconds_estimate, run_flops
from cbam_tutorial.devices import cpu_supports_bf16
from cbam_tutorial.models import build_model
from cbam_tutorial.profiles import PROFILES

NETWORKS = {"resnet20": 256, "fastnet": 512}
ATTENTIONS = (None, "se", "cbam")
TARGET_OVERHEAD = {"resnet20": 0.15, "fastnet": 0.10}


def timed_precisions() -> tuple:
    """("fp32", "bf16") where this CPU computes bf16 natively, else ("fp32",) with a note:
    emulated bf16 runs many times slower than fp32, so its timings would describe the
    emulation, not the network (and no run of the package chooses it there)."""
    if cpu_supports_bf16():
        return ("fp32", "bf16")
    print("bf16 skipped: this CPU computes it only by emulation (no AVX-512 BF16 or AMX; "
          "torch.ops.mkldnn._is_mkldnn_bf16_supported() is False), and the package trains in fp32 here")
    return ("fp32",)


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


def training_steps(network: str, precision: str, attentions=ATTENTIONS) -> dict:
    """attention -> a training-step closure of `network` (channels_last, its batch size),
    every model built from the same seed."""
    steps = {}
    for attention in attentions:
        torch.manual_seed(0)
        model = build_model(network, attention).to(memory_format=torch.channels_last).train()
        steps[attention] = training_step(model, NETWORKS[network], precision)
    return steps


def interleaved_times(steps: dict, repeats: int) -> dict:
    """Seconds of each closure in each of `repeats` rounds; within a round every closure
    runs once, in turn, after three warm-up calls each."""
    for step in steps.values():
        for _ in range(3):
            step()
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    return times


def medians_ms(times: dict) -> dict:
    """label -> median milliseconds, from interleaved_times' seconds."""
    return {label: 1000 * statistics.median(values) for label, values in times.items()}


def interleaved_ms(steps: dict, repeats: int) -> dict:
    """Median milliseconds per call of each closure, timed in turn."""
    return medians_ms(interleaved_times(steps, repeats))


def paired_overhead(times: dict, base, variant) -> tuple:
    """CBAM's overhead measured round by round (variant / base - 1 within each round, so
    that the machine's drifts cancel), as (median, low, high) of a 95% interval."""
    ratios = [v / b - 1 for b, v in zip(times[base], times[variant])]
    return median_interval(ratios)


REFERENCE_MACHINE_STEP_MS = 160.0  # the reference step on the machine the 10-minute budget is set for


def reference_step_ms(repeats: int = 20) -> float:
    """Median ms of the reference step here: ResNet-20 without attention, bf16 autocast,
    channels_last, batch 256, forward + backward + Nesterov SGD (threads as set).

    Refuses on a CPU that only emulates bf16, where the step measures the emulation (tens
    of times slower) and would scale a time budget by nonsense."""
    if not cpu_supports_bf16():
        raise SystemExit("the reference step is a bf16 step, and this CPU computes bf16 only by "
                         "emulation (no AVX-512 BF16 or AMX): its time would not compare with the "
                         f"reference machine's {REFERENCE_MACHINE_STEP_MS:.0f} ms. Run time budgets on a CPU "
                         "with native bf16 (benchmarks/bench_networks.py gives fp32 throughput here)")
    return interleaved_ms(training_steps("resnet20", "bf16", (None,)), repeats)[None]


def bench(networks, repeats: int) -> dict:
    results = {}
    precisions = timed_precisions()
    print(f"{'network':>9} {'batch':>5} {'precision':>9} " + " ".join(
        f"{str(a or 'none') + ' img/s':>11}" for a in ATTENTIONS)
        + f" {'cbam overhead (95% interval)':>29} {'target':>7}")
    for name in networks:
        batch = NETWORKS[name]
        for precision in precisions:
            times = interleaved_times(training_steps(name, precision), repeats)
            ms = medians_ms(times)
            overhead, low, high = paired_overhead(times, None, "cbam")
            target = TARGET_OVERHEAD[name]
            verdict = "" if high <= target else "  MISSED" if low > target else "  UNRESOLVED"
            print(f"{name:>9} {batch:5d} {precision:>9} " + " ".join(
                f"{1000 * batch / ms[a]:11.0f}" for a in ATTENTIONS)
                + f" {overhead:8.1%} ({low:6.1%} to {high:6.1%}) {'<= ' + format(target, '.0%'):>7}{verdict}")
            results[(name, precision)] = ms
    return results


def bench_arrangements(networks, repeats: int) -> dict:
    """Img/s of each network with CBAM in each arrangement, fused and plain, interleaved."""
    arrangements = ("channel-spatial", "spatial-channel", "parallel")
    results = {}
    precisions = timed_precisions()
    print(f"{'network':>9} {'batch':>5} {'precision':>9} {'arrangement':>16} {'fused img/s':>12} "
          f"{'plain img/s':>12} {'fused/plain':>11}")
    for name in networks:
        batch = NETWORKS[name]
        for precision in precisions:
            steps = {}
            for arrangement in arrangements:
                for fused in (True, False):
                    torch.manual_seed(0)
                    model = build_model(name, "cbam", arrangement=arrangement, fused=fused)
                    model = model.to(memory_format=torch.channels_last).train()
                    steps[(arrangement, fused)] = training_step(model, batch, precision)
            ms = interleaved_ms(steps, repeats)
            for arrangement in arrangements:
                fused_ms, plain_ms = ms[(arrangement, True)], ms[(arrangement, False)]
                print(f"{name:>9} {batch:5d} {precision:>9} {arrangement:>16} {1000 * batch / fused_ms:12.0f} "
                      f"{1000 * batch / plain_ms:12.0f} {plain_ms / fused_ms:10.2f}x")
            results[(name, precision)] = ms
    return results


def print_gpu_estimates(profile_name: str = "gpu") -> None:
    """Seconds of one training run of `profile_name` with CBAM on each card: an estimate."""
    profile = PROFILES[profile_name]
    flops = run_flops(count_flops(build_model(profile.model, "cbam")), profile)
    print(f"\nESTIMATE (counted FLOPs / stated peak; not measured): one {profile_name}-profile run of "
          f"{profile.model}+cbam, {profile.epochs} epochs, {flops / 1e15:.2f} PFLOP")
    for card, peak in GPU_PEAK_FLOPS.items():
        low, high = (gpu_seconds_estimate(flops, peak, u) for u in (0.30, 0.10))
        print(f"  {card:16s} {low:6.1f} s at 30% of peak, {high:6.1f} s at 10%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per figure (default 10)")
    parser.add_argument("--only", choices=sorted(NETWORKS), help="one network only")
    parser.add_argument("--arrangements", action="store_true",
                        help="time CBAM's three arrangements, fused and plain, instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if load_extension() is None:
        raise SystemExit("the fused kernels did not compile; see the warning above")
    print(f"torch {torch.__version__}, {args.threads} threads; training step img/s (median of "
          f"{args.repeats}, interleaved)")
    networks = [args.only] if args.only else list(NETWORKS)
    if args.arrangements:
        bench_arrangements(networks, args.repeats)
        return
    results = bench(networks, args.repeats)
    if ("resnet20", "bf16") in results:
        print(f"reference step (ResNet-20, no attention, bf16, batch 256): "
              f"{results[('resnet20', 'bf16')][None]:.0f} ms")
    print_gpu_estimates()


if __name__ == "__main__":
    main()
