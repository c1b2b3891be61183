"""Does a change to the fused CBAM path make a whole training step faster? Paired A/B.

    python benchmarks/compare_kernel_builds.py --against c7c4e13 [--network resnet20]
                                               [--repeats 30] [--threads 2]

Builds the fused path (fused.py and csrc/cbam_gate.cpp) of another commit beside this
checkout's, under names of its own, then times one training step of the network without
attention, with CBAM on the other commit's fused path and with CBAM on this checkout's,
taking turns within every round (the same model weights and batch for both CBAM
variants). It prints, for fp32 and bf16 autocast: the median step of each, CBAM's overhead
on each build, and the change from the other build to this one, each paired by round with
a distribution-free 95% interval. A kernel that runs faster alone can be lost in the noise
of a whole step; this says whether it is.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

import cbam_tutorial.fused as this_build
from bench_networks import NETWORKS, interleaved_times, medians_ms, paired_overhead, timed_precisions, training_steps
from cbam_tutorial.allocator import keep_freed_memory

REPOSITORY = Path(__file__).resolve().parents[1]


def git_show(revision: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPOSITORY, check=True,
                          capture_output=True, text=True).stdout


def load_other_build(revision: str, folder: Path):
    """The fused module of `revision`, importable beside this one, with its own kernels."""
    (folder / "csrc").mkdir(parents=True)
    (folder / "csrc" / "cbam_gate.cpp").write_text(git_show(revision, "cbam_tutorial/csrc/cbam_gate.cpp"))
    (folder / "fused.py").write_text(git_show(revision, "cbam_tutorial/fused.py"))
    name = f"cbam_tutorial.fused_at_{revision}"  # in the package, so that its relative imports work
    spec = importlib.util.spec_from_file_location(name, folder / "fused.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "compile_kernels"):
        raise SystemExit(f"{revision}'s fused.py has no compile_kernels(name): pick a later commit")
    kernels = module.compile_kernels(f"cbam_tutorial_gate_at_{revision}")
    module.load_extension = lambda: kernels
    return module


def use(build) -> None:
    """Route CBAM's forward (it imports these names from cbam_tutorial.fused on every call)."""
    this_build.fused_applies = build.fused_applies
    this_build.fused_cbam = build.fused_cbam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the commit to compare this checkout with")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="resnet20")
    parser.add_argument("--repeats", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if this_build.load_extension() is None:
        raise SystemExit("this checkout's fused kernels did not compile; see the warning above")
    revision = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=REPOSITORY, check=True,
                              capture_output=True, text=True).stdout.strip()
    this = SimpleNamespace(fused_applies=this_build.fused_applies, fused_cbam=this_build.fused_cbam)
    with tempfile.TemporaryDirectory() as folder:
        other = load_other_build(revision, Path(folder))
    batch = NETWORKS[args.network]
    print(f"torch {torch.__version__}, {args.threads} threads; {args.network}, batch {batch}; "
          f"{args.repeats} rounds; CBAM on the fused path of {revision} ('other') and of this checkout")
    for precision in timed_precisions():
        networks = training_steps(args.network, precision, (None, "cbam"))

        def on(build, step=networks["cbam"]):
            def run():
                use(build)
                step()
            return run
        steps = {"none": networks[None], "other": on(other), "this": on(this)}
        times = interleaved_times(steps, args.repeats)
        ms = medians_ms(times)

        def interval(base, variant):
            median, low, high = paired_overhead(times, base, variant)
            return f"{median:+.1%} (95% interval {low:+.1%} to {high:+.1%})"
        print(f"{precision}: step {ms['none']:.1f} ms without attention, {ms['other']:.1f} ms (other), "
              f"{ms['this']:.1f} ms (this)")
        print(f"  CBAM overhead: other {interval('none', 'other')}; this {interval('none', 'this')}")
        print(f"  this / other - 1: {interval('other', 'this')}")
    use(this)


if __name__ == "__main__":
    main()
