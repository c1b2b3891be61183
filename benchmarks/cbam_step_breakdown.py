"""Where CBAM's added time goes in one training step of a network, on a CPU.

    python benchmarks/cbam_step_breakdown.py [--network resnet20] [--threads 2] [--repeats 10]

For each precision (fp32, bf16 autocast) it times the network's training step without
attention and with CBAM (interleaved, medians, as bench_networks.py does), then runs the
CBAM network again with every call into the fused C++ kernels timed where it happens, in
the network, on the activations the step really produces. It prints, per step:

    the time CBAM adds (CBAM step - plain step);
    each kernel's milliseconds, by the shape of its input (one row per stage);
    the kernels' total, and the rest: the small PyTorch operations of the gates
    (channel MLP, the spatial map's BatchNorm and sigmoid, stacking) and the Python and
    autograd work around them.

Kernels timed in isolation on one tensor again and again run from the cache and look
2-3x faster than they do here; this script measures them where they run. The timed run
is a separate pass, so its step time (printed) is slightly above the untimed one.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

import cbam_tutorial.fused as fused
from bench_networks import NETWORKS, interleaved_times, medians_ms, paired_overhead, timed_precisions, training_steps
from cbam_tutorial.allocator import keep_freed_memory


class _TimedKernels:
    """Stands in for the compiled module: forwards every call and adds up its seconds,
    keyed by (kernel name, shape of the first argument without the batch)."""

    def __init__(self, kernels) -> None:
        self._kernels = kernels
        self.seconds = defaultdict(float)

    def __getattr__(self, name):
        kernel = getattr(self._kernels, name)

        def timed(*args):
            start = time.perf_counter()
            result = kernel(*args)
            self.seconds[(name, tuple(args[0].shape[1:]))] += time.perf_counter() - start
            return result
        return timed


@contextmanager
def timed_kernels():
    """Within the block, the fused CBAM path calls the kernels through a _TimedKernels."""
    original = fused.load_extension
    proxy = _TimedKernels(original())
    fused.load_extension = lambda: proxy
    try:
        yield proxy
    finally:
        fused.load_extension = original


def breakdown(network: str, precision: str, repeats: int) -> None:
    steps = training_steps(network, precision, (None, "cbam"))
    times = interleaved_times(steps, repeats)
    ms = medians_ms(times)
    added = ms["cbam"] - ms[None]
    overhead, low, high = paired_overhead(times, None, "cbam")
    with timed_kernels() as proxy:
        start = time.perf_counter()
        for _ in range(repeats):
            steps["cbam"]()
        timed_step = 1000 * (time.perf_counter() - start) / repeats
    per_step = {key: 1000 * s / repeats for key, s in proxy.seconds.items()}
    kernels = sum(per_step.values())
    print(f"\n{network}, batch {NETWORKS[network]}, {precision}: plain step {ms[None]:.1f} ms, CBAM step "
          f"{ms['cbam']:.1f} ms: CBAM adds {added:.1f} ms (paired by round: {overhead:+.1%}, 95% interval "
          f"{low:+.1%} to {high:+.1%}); "
          f"timed pass {timed_step:.1f} ms per step")
    for (name, shape), value in sorted(per_step.items()):
        print(f"  {name:32s} {'x'.join(map(str, shape)):>9s} {value:7.2f} ms")
    print(f"  {'all kernels':42s} {kernels:7.2f} ms ({kernels / added:.0%} of the added time)")
    print(f"  {'the rest (small ops, Python, autograd)':42s} {added - kernels:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=sorted(NETWORKS), default="resnet20")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per figure (default 10)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if fused.load_extension() is None:
        raise SystemExit("the fused kernels did not compile; see the warning above")
    print(f"torch {torch.__version__}, {args.threads} threads; milliseconds per training step")
    for precision in timed_precisions():
        breakdown(args.network, precision, args.repeats)


if __name__ == "__main__":
    main()
