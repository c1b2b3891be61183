"""Time to accuracy of the `cpu` profile on this machine, the budget scaled by its speed.

    python benchmarks/time_to_accuracy.py --seeds 0 1 2 --out results/train

The target: with CBAM, mean test accuracy over 3 seeds of at least 93% within 10 minutes
of training on a machine whose reference step (ResNet-20 without attention, bf16,
channels_last, batch 256, 2 threads; bench_networks.reference_step_ms) takes 160 ms.
Machines differ by up to 1.7x, so for each seed this script first measures the reference
step here (run it on a quiet machine: nothing else using the cores), then trains FastNet
with CBAM in the `cpu` profile with the test accuracy measured after every epoch (not
counted as training time) in runs/cpu-fastnet-cbam-seed<N>/ (an interrupted run resumes
there), and writes OUT/cpu-fastnet-cbam-seed<N>.json: the run's metrics (settings,
provenance, history) and a "time_budget" record: the reference step measured here, the
budget it gives (600 s x step / 160 ms) and the test accuracy of the last epoch that
finished within it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench_networks import REFERENCE_MACHINE_STEP_MS, reference_step_ms
from cbam_tutorial.allocator import keep_freed_memory
from cbam_tutorial.data import load_cifar10
from cbam_tutorial.storage import write_atomically
from cbam_tutorial.train import train

BUDGET_SECONDS = 600.0


def budget_record(history: list, step_ms: float) -> dict:
    seconds = BUDGET_SECONDS * step_ms / REFERENCE_MACHINE_STEP_MS
    within = [h for h in history if h["train_seconds"] <= seconds]
    return {"reference_step_ms": step_ms, "reference_machine_step_ms": REFERENCE_MACHINE_STEP_MS,
            "budget_on_reference_machine_s": BUDGET_SECONDS, "seconds": seconds,
            "epochs_within_budget": len(within),
            "test_accuracy_within_budget": within[-1]["test_accuracy"] if within else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the resumable runs live")
    parser.add_argument("--out", type=Path, required=True, help="folder of the results files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    data = load_cifar10()
    for seed in args.seeds:
        step_ms = reference_step_ms()
        print(f"seed {seed}: reference step {step_ms:.0f} ms, budget "
              f"{BUDGET_SECONDS * step_ms / REFERENCE_MACHINE_STEP_MS:.0f} s", file=sys.stderr)
        result = train("fastnet", "cbam", profile="cpu", seed=seed, data=data, test_curve=True,
                       progress=False, out_dir=args.runs / f"cpu-fastnet-cbam-s{seed}")
        record = result.to_json()
        record["time_budget"] = budget_record(result.history, step_ms)
        record["command"] = "python benchmarks/time_to_accuracy.py " + " ".join(sys.argv[1:])
        path = args.out / f"cpu-fastnet-cbam-seed{seed}.json"
        text = json.dumps(record, indent=2)
        write_atomically(path, lambda handle: handle.write(text.encode()))
        print(f"seed {seed}: test accuracy {100 * result.test['accuracy']:.2f}% after "
              f"{result.train_seconds:.0f} s of training -> {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
