"""What each piece of the fast recipe buys: the `cpu` recipe with one piece changed at a time.

    python benchmarks/recipe_ablation.py --epochs 6 --seed 0 \
        --out results/train/recipe-ablation.jsonl

Every variant trains FastNet with CBAM on the 45,000-image training split for the same
number of epochs (most take one piece out; a few try what airbench94 does differently)
and is scored on the 5,000-image validation split (choices are made on
validation images, never on the test set). The full recipe's model is also scored with
each test-time augmentation, which needs no retraining. One JSON line per variant, with
the run's settings and provenance, is appended as soon as it finishes; a variant already
in the file is skipped, so the command resumes after an interruption.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from cbam_tutorial.data import load_cifar10
from cbam_tutorial.loader import TensorLoader
from cbam_tutorial.loop import TTA_MODES, evaluate
from cbam_tutorial.ledger import append_record
from cbam_tutorial.train import train

# name -> (what changes, profile overrides, model options)
VARIANTS = {
    "full recipe": ("nothing", {}, {}),
    "no whitening": ("the frozen patch-whitening stem (a trained 3x3 convolution instead)", {},
                     {"whitening": False}),
    "no dirac init": ("the partial-identity start of each stage's first convolution", {},
                      {"dirac_init": False}),
    "no lookahead": ("lookahead of the weights", {"lookahead_every": None}, {}),
    "biases at 1x": ("the 64x learning rate of the BatchNorm biases", {"bias_lr_scale": 1.0}, {}),
    "whitening bias trained throughout": ("freezing the whitening bias after 3 epochs",
                                          {"whitening_bias_epochs": None}, {}),
    "random flips": ("alternating flips (random ones instead)", {"flip": "random"}, {}),
    "zero padding 4": ("reflect padding of 2 (black padding of 4 instead)", {"pad_mode": "zeros", "padding": 4}, {}),
    "no label smoothing": ("label smoothing", {"label_smoothing": 0.0}, {}),
    "plain stages": ("the residual identity of each stage (airbench's plain conv-BN-GELU groups)", {},
                     {"residual": False}),
    "lr 0.5": ("the peak learning rate: 0.5 instead of 0.75 (airbench's rate per example)", {"lr": 0.5}, {}),
    "batch 1024": ("the batch: 1024 images (the peak learning rate scaled to 1.5)",
                   {"batch_size": 1024, "lr": 1.5}, {}),
}


def done_variants(path: Path) -> set:
    """The variants already in the file (its lines are this script's records, not a grid's)."""
    if not path.is_file():
        return set()
    return {json.loads(line)["variant"] for line in path.read_text().splitlines() if line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="run these variants only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cifar10()
    for variant in args.only or VARIANTS:
        if variant in done_variants(args.out):
            print(f"{variant}: already in {args.out}, skipped", file=sys.stderr)
            continue
        change, overrides, model_options = VARIANTS[variant]
        result = train(None, "cbam", profile="cpu", seed=args.seed, data=data, progress=False,
                       epochs=args.epochs, train_on="train", model_options=model_options, **overrides)
        record = {"variant": variant, "change": change, "epochs": args.epochs,
                  "val_accuracy": result.val["accuracy"], "train_seconds": result.train_seconds,
                  "epoch_seconds": [h["epoch_seconds"] for h in result.history],
                  **{key: getattr(result, key) for key in ("config", "provenance", "data", "parameters", "flops")}}
        if variant == "full recipe":
            _, val_split = data.split()
            loader = TensorLoader(val_split.images, val_split.labels, 500, False)
            record["val_accuracy_by_tta"] = {
                tta: evaluate(result.model, loader, result.config["precision"], tta)["accuracy"]
                for tta in TTA_MODES}
        append_record(args.out, record)
        print(f"{variant}: validation accuracy {100 * record['val_accuracy']:.2f}% after "
              f"{record['train_seconds']:.0f} s of training", file=sys.stderr)


if __name__ == "__main__":
    main()
