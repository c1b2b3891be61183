"""The committed reference results (results/ in the repository), for the chapters.

    records = reference_records("ablation-all-cpu.jsonl")
    run = reference_json("train/cpu-resnet20-cbam-seed0-attempt2-lr0.4.json")
    names = reference_names("train/cpu-fastnet-cbam-seed*.json")
"""
from __future__ import annotations

import json
from pathlib import Path

from ..ledger import read_records
from . import book_root


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
    """The records of a JSON-lines results file (one run per line)."""
    return read_records(reference_path(name))


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
