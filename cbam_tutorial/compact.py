"""Small weights files: a trained model's weights at 8 bits, for shipping with the book.

    write_compact(model, config, "cbam.pt.xz")       # returns the file's sha256
    model = read_compact("cbam.pt.xz", sha256=...)   # refuses a file whose digest differs

A FastNet has about 2 million weights: 8 MB in fp32, 4 MB in half precision. Here every
weight tensor of two or more dimensions (convolutions, linear layers) is stored as int8
with one fp32 scale per output channel (symmetric: w = scale[o] * q, q in -127..127),
everything else (BatchNorm statistics and affine terms, the whitening stem's bias) in
fp32, and the whole file is xz-compressed: about 1.8 MB. The rounding error of a weight is
at most half its channel's step (max |w| / 254); what that costs in accuracy is measured
when the file is made (see the record written beside it), not assumed.
"""
from __future__ import annotations

import hashlib
import io
import json
import lzma
from pathlib import Path

import torch
from torch import nn

from .models import build_model
from .storage import write_atomically

FORMAT = "cbam-tutorial-int8-v1"


class CompactFileError(ValueError):
    """A compact weights file that is missing, corrupt, or not the file its record names."""


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, ...) float -> (int8 of the same shape, (O,) fp32 scales), per output channel."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127
    q = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The inverse of quantize, up to rounding: (O, ...) int8, (O,) -> (O, ...) fp32."""
    return q.float() * scale.reshape(-1, *([1] * (q.dim() - 1)))


def compact_state(model: nn.Module) -> dict:
    """{"int8": {name: (q, scale)}, "float": {name: tensor}} of the model's state dict."""
    int8, floats = {}, {}
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            int8[name] = quantize(tensor)
        else:
            floats[name] = tensor.detach().cpu().float() if tensor.is_floating_point() else tensor.cpu()
    return {"int8": int8, "float": floats}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_compact(model: nn.Module, config: dict, path: str | Path) -> str:
    """Write `model`'s weights to `path` (atomically) and return the file's sha256.

    config: how to rebuild the network, {"model", "attention", "attention_options",
    "model_options"} as train() records it in metrics.json.
    """
    keys = ("model", "attention", "attention_options")
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"config lacks {missing}; pass the 'config' of the run's metrics.json")
    payload = {"format": FORMAT, "config": {k: config.get(k) for k in (*keys, "model_options")},
               **compact_state(model)}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    packed = lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    write_atomically(Path(path), lambda handle: handle.write(packed))
    return hashlib.sha256(packed).hexdigest()


def read_compact(path: str | Path, sha256: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network stored in `path` and load its weights; in eval mode.

    sha256: the digest the file must have (from its record); a file that differs raises
    CompactFileError before anything in it is read.
    """
    path = Path(path)
    if not path.is_file():
        raise CompactFileError(f"no weights file at {path}")
    packed = path.read_bytes()
    if sha256 is not None and hashlib.sha256(packed).hexdigest() != sha256:
        raise CompactFileError(
            f"{path} does not match the sha256 its record names ({sha256[:12]}...): the file is corrupt or "
            "was replaced. Restore it (git checkout -- <file>, or a fresh clone), or remake it with the "
            "command in its record")
    try:
        payload = torch.load(io.BytesIO(lzma.decompress(packed)), map_location="cpu", weights_only=True)
    except (lzma.LZMAError, RuntimeError, EOFError) as error:
        raise CompactFileError(f"{path} is not a readable compact weights file ({error}); remake it with "
                               "the command in its record") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CompactFileError(f"{path} is not a {FORMAT} file")
    config = payload["config"]
    model = build_model(config["model"], config["attention"], **(config.get("model_options") or {}),
                        **(config["attention_options"] or {}))
    state = dict(payload["float"])
    state.update({name: dequantize(q, scale) for name, (q, scale) in payload["int8"].items()})
    model.load_state_dict(state)
    return model.to(device).eval()


def record_path(weights_path: str | Path) -> Path:
    """The record beside a weights file: name.pt.xz -> name.json."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name.removesuffix(".xz").removesuffix(".pt") + ".json")


def export_run(run_dir: str | Path, out: str | Path, data, command: str | None = None) -> dict:
    """Write a finished run's model (train(out_dir=run_dir)) as a compact file `out`, and
    beside it the record: sha256, size, the run's metrics.json, and the test accuracy of
    the model as stored (read back from `out` and evaluated like the run was) next to the
    run's own. Returns the record.

    data: the CIFAR10 the run was trained on (its test split is evaluated).
    """
    from .loader import TensorLoader
    from .loop import evaluate
    from .train import load_model

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no metrics.json: the run has not finished; resume it with "
                                "the same train command first")
    training = json.loads(metrics_path.read_text())
    trained_on, given = training.get("data", {}).get("sha256"), data.copy.get("sha256")
    if trained_on and given and trained_on != given:
        raise ValueError(f"the run was trained on the data copy with sha256 {trained_on[:12]}..., not on the "
                         f"one passed ({given[:12]}...); load the same copy (see load_cifar10's source)")
    sha256 = write_compact(load_model(run_dir, "cpu"), training["config"], out)
    stored = read_compact(out, sha256)
    profile = training["config"]["profile"]
    test = evaluate(stored, TensorLoader(data.test_images, data.test_labels, 500, False, torch.device("cpu")),
                    training["config"]["precision"], profile.get("tta", "flip"))
    record = {
        "file": Path(out).name, "format": FORMAT, "sha256": sha256, "bytes": Path(out).stat().st_size,
        "made_by": command, "test_accuracy_stored": test["accuracy"],
        "test_accuracy_run": training["test"]["accuracy"], "training": training,
    }
    write_atomically(record_path(out), lambda handle: handle.write(json.dumps(record, indent=1).encode()))
    return record
