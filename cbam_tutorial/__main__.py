"""Command line: python -m cbam_tutorial train ... (see --help)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .allocator import keep_freed_memory
from .attention import ARRANGEMENTS, CHANNEL_POOLINGS, SPATIAL_POOLINGS
from .data import DataError, load_cifar10
from .devices import PRECISIONS
from .ledger import LedgerBusy
from .models import MODEL_NAMES
from .profiles import PROFILES
from .runner import GridFailures
from .settings import current_settings
from .storage import StorageError, ensure_writable_file


def _attention_options(args) -> dict:
    # build_attention maps channel_pooling / spatial_pooling to "cam" / "sam"'s pooling
    names = ("reduction", "kernel_size", "arrangement", "channel_pooling", "spatial_pooling")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _train(args) -> int:
    from .train import train

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    attention = None if args.attention == "none" else args.attention
    data = load_cifar10(source=args.data_source)
    settings = current_settings()
    keep_freed_memory()
    result = train(args.model, attention, profile=args.profile, seed=args.seed, device=args.device,
                   precision=args.precision, data=data, out_dir=args.out,
                   progress=settings.shows_progress() if args.progress is None else args.progress,
                   cost_log=settings.train_log, test_curve=args.test_curve,
                   attention_options=_attention_options(args), **overrides)
    summary = {"test_accuracy": result.test["accuracy"], "val_accuracy": result.val["accuracy"] if result.val else None,
               "train_seconds": round(result.train_seconds, 1), "epochs": len(result.history),
               "data": result.data["source"], "precision": result.config["precision"],
               "metrics": str(Path(args.out) / "metrics.json")}
    print(json.dumps(summary, indent=2))
    return 0


def _ablate(args) -> int:
    from .comparison import summarize
    from .runner import run_grid

    overrides = {name: getattr(args, name) for name in ("epochs", "train_subset") if getattr(args, name) is not None}
    if args.figure:
        ensure_writable_file(Path(args.figure))  # now, not after hours of training
    records = run_grid(args.grid, args.seeds, args.profile, args.out, workers=args.workers, ray=args.ray,
                       ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus, only=args.only, **overrides)
    metric = "val" if all(r.get("val") for r in records) else "test"
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\n{metric} accuracy over seeds ({args.out}):")
        table = summarize(records, metric=metric)
        print(table.round(2).to_string())
    if args.figure:
        from .viz import plot_ablation

        plot_ablation(table, title=f"{args.grid} grid, {args.profile} profile, {metric} accuracy") \
            .savefig(args.figure)
        print(f"figure: {args.figure}")
    return 0


def _compact(args) -> int:
    from .compact import export_run

    command = "python -m cbam_tutorial " + " ".join(args.command_line)
    record = export_run(args.run_dir, args.out, load_cifar10(source=args.data_source), command=command)
    print(json.dumps({k: record[k] for k in ("file", "sha256", "bytes", "test_accuracy_stored",
                                              "test_accuracy_run")}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cbam_tutorial",
                                     description="CBAM Tutorial: train CIFAR-10 models with attention.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train one model on CIFAR-10 and write metrics.json and checkpoint.pt",
        description="Train one model on CIFAR-10. Writes OUT/metrics.json (settings, provenance: "
                    "commit, date, versions, device, precision, profile, data copy, seed, wall time; "
                    "per-epoch history; final validation and test accuracy) and OUT/checkpoint.pt "
                    "(after every epoch). Running the same command again resumes an interrupted run.",
    )
    train.add_argument("--model", choices=tuple(n for n in MODEL_NAMES if n != "resnet50"), default=None,
                       help="network; default: the profile's model (fastnet for the fast recipe's profiles, "
                            "resnet20 for the former recipes and the live grids, resnet18 for full)")
    train.add_argument("--attention", choices=("none", "se", "cbam", "cam", "sam"), default="none",
                       help="attention module in every residual block (default none)")
    train.add_argument("--profile", choices=tuple(PROFILES), default=None,
                       help="cost of the run: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
                       .replace("%", "%%") + ". Default: $CBAM_TUTORIAL_PROFILE, else gpu on a CUDA GPU, quick on a CPU that computes "
                            "bf16 natively, quick-fp32 on one that does not, quick elsewhere")
    train.add_argument("--seed", type=int, default=0, help="fixes initial weights, batch order and augmentation (default 0)")
    train.add_argument("--out", required=True, help="output folder (created); holds metrics.json and checkpoint.pt")
    train.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU; the default), cpu, cuda or mps")
    train.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="autocast precision; auto (the default): bf16 where supported (fp16 on older GPUs), else fp32")
    train.add_argument("--reduction", type=int, default=None, help="channel MLP reduction ratio r (default 16)")
    train.add_argument("--kernel-size", type=int, default=None, help="spatial gate kernel size, odd (default 7)")
    train.add_argument("--arrangement", choices=ARRANGEMENTS, default=None, help="CBAM arrangement (default channel-spatial)")
    train.add_argument("--channel-pooling", choices=CHANNEL_POOLINGS, default=None,
                       help="pooling of the channel gate (default avg+max)")
    train.add_argument("--spatial-pooling", choices=SPATIAL_POOLINGS, default=None,
                       help="pooling of the spatial gate (default avg+max)")
    train.add_argument("--data-source", choices=("auto", "original", "jpeg-offline"), default="auto",
                       help="which CIFAR-10 copy: auto finds one (see data/README.md)")
    train.add_argument("--test-curve", action="store_true",
                       help="also measure test accuracy after every epoch (for an accuracy-against-time curve)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar (default: on in a terminal or Colab)")
    train.set_defaults(run=_train)

    from .grids import GRIDS

    ablate = commands.add_parser(
        "ablate", help="run one of the paper's ablation grids over several seeds (resumable)",
        description="Run every (configuration, seed) of a grid that OUT does not hold yet, appending "
                    "one record per run (settings, provenance, history, accuracies) to the JSON-lines "
                    "file OUT; then print the summary: mean, standard deviation and 95% interval per "
                    "configuration and the difference to the baseline. Grids: pooling (the paper's "
                    "Table 1), spatial (Table 2), arrangement (Table 3), all (their union).")
    ablate.add_argument("--grid", choices=tuple(GRIDS), required=True, help="which grid")
    ablate.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every configuration (default 3)")
    ablate.add_argument("--profile", choices=tuple(PROFILES), required=True, help="cost of every run (see train --help)")
    ablate.add_argument("--only", nargs="+", default=None, metavar="CONFIGURATION",
                        help="run only these configurations of the grid (names as the summary prints "
                             "them, e.g. baseline 'cbam avg+max k=7'): to give more seeds to the "
                             "comparisons whose intervals are still wide")
    ablate.add_argument("--out", required=True, help="results file (JSON lines), created or extended")
    ablate.add_argument("--workers", type=int, default=1,
                        help="worker processes sharing the CPU threads (default 1)")
    ablate.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the grid as tasks on a Ray cluster: auto (the cluster this machine "
                             "belongs to), HOST:PORT, or local (start Ray on this machine); needs the ray extra")
    ablate.add_argument("--ray-cpus", type=float, default=2, help="CPUs (torch threads) per run on Ray (default 2)")
    ablate.add_argument("--ray-gpus", type=float, default=0, help="GPUs per run on Ray (default 0)")
    ablate.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    ablate.add_argument("--train-subset", type=int, default=None, metavar="IMAGES",
                        help="train every run on this many images of the training split (one subset, drawn "
                             "once; default: the profile's), e.g. for an experiment on the training-set size")
    ablate.add_argument("--figure", default=None, help="also save the summary figure to this path (.png)")
    ablate.set_defaults(run=_ablate)

    compact = commands.add_parser(
        "compact", help="store a finished run's model in a small file (8-bit weights) with its record",
        description="Write the model of a finished training run (train --out RUN) as an xz-compressed file "
                    "of 8-bit weights (about 1.7 MB for FastNet), and beside it NAME.json: the file's "
                    "sha256, the run's metrics.json, and the test accuracy of the stored model next to "
                    "the run's own.")
    compact.add_argument("run_dir", metavar="RUN", help="the run's output folder (holds metrics.json and checkpoint.pt)")
    compact.add_argument("--out", required=True, help="the weights file to write, e.g. results/models/NAME.pt.xz")
    compact.add_argument("--data-source", choices=("auto", "original", "jpeg-offline"), default="auto",
                         help="the CIFAR-10 copy the run was trained on (its test split is evaluated)")
    compact.set_defaults(run=_compact)

    assignments = commands.add_parser(
        "assignments", help="write student versions of the chapters (solutions replaced by scaffolds)",
        description="For every chapter notebook, write a student version into OUT: solution cells "
                    "(tagged 'solution') become their '# YOUR CODE HERE' scaffolds, answers to questions "
                    "(solution directives) are removed, the exercises and automatic checks stay. Nothing "
                    "is written if any line of a reference solution would survive.")
    assignments.add_argument("--out", required=True, help="folder for the student notebooks (created)")
    assignments.add_argument("--chapters", default=None,
                             help="folder of the chapter notebooks (default: the repository's chapters/)")
    assignments.set_defaults(run=_assignments)
    return parser


def _assignments(args) -> int:
    from .book.assignments import AssignmentError, write_assignments

    try:
        written = write_assignments(args.out, args.chapters)
    except AssignmentError as error:
        raise ValueError(str(error)) from error
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = argv
    try:
        return args.run(args)
    except (ValueError, DataError, FileNotFoundError) as error:  # what was asked for cannot be done
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (StorageError, LedgerBusy, GridFailures) as error:  # the work met a problem it names
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the engine and the runner have said what is kept and how to resume
        return 130


if __name__ == "__main__":
    sys.exit(main())
