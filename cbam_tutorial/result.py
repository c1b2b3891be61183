"""What a training run returns: the trained model and plain data about the run.

    result = train("fastnet", "cbam", profile="quick")
    result.test["accuracy"]     # measured once, at the end
    result.history[-1]          # the last epoch: losses, accuracies, learning rate, seconds
    result.to_json()            # everything but the model, as plain data (metrics.json)
    TrainingResult.from_json(json.loads(path.read_text()))   # the same, read back (no model)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn


@dataclass
class TrainingResult:
    """One training run.

    config: every setting (model, attention and its options, profile, seed, precision, ...);
    provenance: code commit, date, versions, device, threads; data: which copy of CIFAR-10;
    parameters, flops: of the model (FLOPs of one forward pass of one 32 x 32 image);
    history: one dict per epoch; val, test: {"loss", "accuracy"} at the end (val is None
    when the run trained on train+val); train_seconds: training time without evaluations;
    stopped_early: an on_epoch callback stopped it; model: the trained network (eval mode),
    None when read back from JSON.
    """

    config: dict
    provenance: dict
    data: dict
    parameters: int
    flops: int
    history: list
    val: dict | None
    test: dict
    train_seconds: float
    stopped_early: bool = False
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        """Every field but the model, as JSON-ready plain data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}

    @classmethod
    def from_json(cls, plain: dict, model: nn.Module | None = None) -> TrainingResult:
        """The result written by to_json() (e.g. a metrics.json), with `model` if given."""
        names = {f.name for f in dataclasses.fields(cls)} - {"model"}
        missing = sorted(names - set(plain) - {"stopped_early"})
        if missing:
            raise ValueError(f"not a training result: the fields {missing} are missing")
        return cls(**{k: v for k, v in plain.items() if k in names}, model=model)
