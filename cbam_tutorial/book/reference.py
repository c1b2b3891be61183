"""The committed reference results (results/ in the repository), for the chapters.

    records = reference_records("ablation-all-gpu.jsonl")
    run = reference_json("train/cpu-resnet20-cbam-seed0-attempt2-lr0.4.json")
    names = reference_names("train/cpu-fastnet-cbam-seed*.json")
    book_model = reference_or_trained_model("cbam", data)    # results/models/, else trained here
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..compact import read_compact, record_path
from ..ledger import read_records
from . import book_root

# The reference models of the book (results/models/, see results/README.md): the `cpu`
# profile's FastNet, seed 0, stored with 8-bit weights.
REFERENCE_MODELS = {None: "models/cpu-fastnet-baseline-seed0.pt.xz", "se": "models/cpu-fastnet-se-seed0.pt.xz",
                    "cbam": "models/cpu-fastnet-cbam-seed0.pt.xz"}


def results_dir() -> Path:
    """The book checkout's results/ folder (see book_root)."""
    return book_root() / "results"


def reference_path(name: str) -> Path:
    path = results_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"reference result {name!r} not found in {results_dir()}; the reference results ship with the "
            "repository, not with the package: run the chapter from a clone (in Colab the setup cell "
            "clones it), or regenerate the file with the command in results/README.md")
    return path


def reference_records(name: str) -> list[dict]:
    """The records of a grid's results file (the ablation runner's ledger, one run per line)."""
    return read_records(reference_path(name))


def reference_lines(name: str) -> list[dict]:
    """Every line of a JSON-lines results file written by a benchmark script, not by the
    grid runner (e.g. train/recipe-ablation-*.jsonl); a torn line is an error that names it."""
    path = reference_path(name)
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not JSON ({error}); restore the file from git "
                             "or rerun the command in results/README.md") from error
    return lines


def reference_json(name: str) -> dict:
    return json.loads(reference_path(name).read_text())


def reference_names(pattern: str) -> list[str]:
    """Names (relative to results/) of the committed results files matching a glob `pattern`,
    e.g. "train/cpu-fastnet-cbam-seed*.json", sorted; a FileNotFoundError if there are none."""
    results = results_dir()
    names = sorted(str(path.relative_to(results)) for path in results.glob(pattern) if path.is_file())
    if not names:
        raise FileNotFoundError(f"no reference result matches {pattern!r} in {results}; see results/README.md")
    return names


@dataclass
class BookModel:
    """A trained model for a chapter and where it came from.

    test_accuracy: the fraction of the test set it classifies correctly (of the stored
    model, for a reference model); source: a sentence naming the file or the training.
    """

    model: nn.Module
    test_accuracy: float
    profile: str
    source: str


def reference_model(attention: str | None, device: str = "cpu") -> BookModel:
    """The book's reference model with `attention` (None, "se" or "cbam"), read from
    results/models/ after checking the file against the sha256 in its record."""
    if attention not in REFERENCE_MODELS:
        raise ValueError(f"no reference model with attention {attention!r}; choose one of "
                         f"{', '.join(map(repr, REFERENCE_MODELS))}")
    path = reference_path(REFERENCE_MODELS[attention])
    record = json.loads(reference_path(str(record_path(path).relative_to(results_dir()))).read_text())
    model = read_compact(path, record["sha256"], device)
    profile = record["training"]["config"]["profile"]["name"]
    return BookModel(model, record["test_accuracy_stored"], profile,
                     f"results/{REFERENCE_MODELS[attention]} (sha256 {record['sha256'][:12]}...)")


def reference_or_trained_model(attention: str | None, data=None, device: str | None = None) -> BookModel:
    """The reference model if this checkout has it; otherwise one trained here with the
    device's default profile (zoo.trained_model: trained once, then read from its checkpoint)."""
    from ..devices import choose_device
    from ..zoo import trained_model

    try:
        return reference_model(attention, str(choose_device(device)))
    except FileNotFoundError:
        model, result = trained_model(attention, data=data, device=device, with_metrics=True)
        return BookModel(model, result.test["accuracy"], result.config["profile"]["name"],
                         f"trained here ({result.config['profile']['name']} profile, seed 0)")
