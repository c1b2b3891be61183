"""The committed reference results (results/ in the repository), for the chapters.

    records = reference_records("ablation-all-gpu.jsonl")
    setup = grid_setup(records)      # setup.sentence(): how every run of the grid was made
    run = reference_json("train/cpu-resnet20-cbam-seed0-attempt2-lr0.4.json")
    names = reference_names("train/cpu-fastnet-cbam-seed*.json")
    book_model = reference_or_trained_model("cbam", data)    # results/models/, else trained here
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..compact import read_compact, record_path
from ..ledger import outcome_settings, read_records
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


@dataclass(frozen=True)
class GridSetup:
    """How every run of a grid was made, as the chapters describe it.

    profile: the training profile's name ("gpu", "grid"); description: the profile's own
    sentence (the first run's); epochs: the schedule's length; data: which copy of CIFAR-10;
    machines: each device that ran some of the runs, without the thread count (a CPU grid
    may mix one- and two-thread workers), with its number of runs, in the order the file
    first names them.
    A grid made over several sessions may span machines of one device type: the runs' key
    covers the device type, not the model of the processor.
    """

    profile: str
    description: str
    epochs: int
    data: str
    machines: tuple[tuple[str, int], ...]

    @property
    def machine(self) -> str:
        """E.g. 'NVIDIA H100 80GB HBM3', or 'CPU A (54 runs) and CPU B (3 runs)'."""
        if len(self.machines) == 1:
            return self.machines[0][0]
        named = [f"{name} ({runs} run{'' if runs == 1 else 's'})" for name, runs in self.machines]
        return ", ".join(named[:-1]) + " and " + named[-1]

    def sentence(self) -> str:
        """E.g. 'the “gpu” profile (a chapter's training cell on a GPU ...), on NVIDIA H100'."""
        return f"the “{self.profile}” profile ({self.description}), on {self.machine}"

    def schedule(self) -> str:
        """E.g. '13 epochs, NVIDIA H100 80GB HBM3'."""
        return f"{self.epochs} epochs, {self.machine}"


def run_machine(record: dict) -> str:
    """The machine that made a run's record, e.g. "CPU AMD EPYC" (no thread count).

    Records written before provenance kept the machine on its own have only the device
    description ("CPU AMD EPYC, 1 threads"); the thread count is cut from it.
    """
    provenance = record["provenance"]
    return provenance.get("machine") or re.sub(r", \d+ threads?$", "", provenance["device"])


def grid_setup(records: list[dict]) -> GridSetup:
    """The setup that every record of a grid shares, with the machines that ran it.

    A ValueError if the records are empty or differ in what decides a run's outcome besides
    its configuration and seed (the profile's name, any of its training fields, the
    precision, the device type, the copy of the data): their comparison would mix what it
    compares. The description is prose, reworded by later code; the first run's is given.
    """
    if not records:
        raise ValueError("no records: a grid's setup is read from its runs; run the grid first "
                         "(the command is in results/README.md)")

    def shared(record: dict) -> dict:
        settings = outcome_settings(record["config"], record.get("data"))
        return {"profile": record["profile"], "precision": settings["precision"],
                "device type": settings["device_type"], "data": settings["data"]["source"],
                **{f"profile field {name}": value for name, value in settings["profile"].items()}}

    first = shared(records[0])
    for record in records[1:]:
        for name, theirs in shared(record).items():
            if theirs != first.get(name):
                raise ValueError(
                    f"the records mix setups: run {record.get('key', '?')!r} has {name} "
                    f"{theirs!r}, the first run {first.get(name)!r}; keep one grid's runs in one "
                    "file (results/README.md gives each grid's command)")
    machines = Counter(run_machine(record) for record in records)  # keeps first-seen order
    return GridSetup(profile=first["profile"], description=records[0]["config"]["profile"]["description"],
                     epochs=first["profile field epochs"], data=first["data"], machines=tuple(machines.items()))


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
