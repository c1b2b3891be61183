"""8-bit weight files: the quantisation against a hand computation, the file's integrity
checks, the export of a finished run, and the book's committed reference models."""
import json
from pathlib import Path

import pytest
import torch

from cbam_tutorial.compact import (CompactFileError, dequantize, export_run, quantize, read_compact, record_path,
                                   write_compact)
from cbam_tutorial.models import build_model
from cbam_tutorial.train import train
from cbam_test_models import synthetic_cifar10

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"model": "fastnet", "attention": "cbam", "attention_options": {}, "model_options": None}


def test_quantize_matches_a_hand_computation():
    weight = torch.tensor([[0.4, -1.0, 0.25], [0.03, 0.01, -0.04]])
    q, scale = quantize(weight)
    # per output channel: scale = max |w| / 127, q = round(w / scale)
    torch.testing.assert_close(scale, torch.tensor([1.0 / 127, 0.04 / 127]))
    assert q.dtype == torch.int8
    assert q.tolist() == [[51, -127, 32], [95, 32, -127]]  # 50.8, 31.75, 95.25 rounded
    error = (dequantize(q, scale) - weight).abs()
    assert (error <= scale[:, None] / 2 + 1e-7).all()


def test_a_channel_of_zeros_stays_zero():
    q, scale = quantize(torch.zeros(2, 3, 3, 3))
    assert (dequantize(q, scale) == 0).all()


def test_round_trip_keeps_the_network(tmp_path):
    model = build_model("fastnet", "cbam").eval()
    with torch.no_grad():
        for module in model.modules():  # non-trivial running statistics must survive too
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    digest = write_compact(model, CONFIG, tmp_path / "m.pt.xz")
    assert (tmp_path / "m.pt.xz").stat().st_size < 2 * 1024 * 1024  # 1.98 M weights at 8 bits, compressed
    restored = read_compact(tmp_path / "m.pt.xz", digest)
    assert not restored.training
    original, loaded = model.state_dict(), restored.state_dict()
    for name, tensor in original.items():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            step = tensor.flatten(1).abs().amax(1) / 127
            bound = step.reshape(-1, *([1] * (tensor.dim() - 1))) / 2 + 1e-7
            assert ((loaded[name] - tensor).abs() <= bound).all(), name
        else:
            torch.testing.assert_close(loaded[name], tensor.float() if tensor.is_floating_point() else tensor)


def test_a_file_that_differs_from_its_record_is_refused(tmp_path):
    path = tmp_path / "m.pt.xz"
    digest = write_compact(build_model("fastnet", None), {**CONFIG, "attention": None}, path)
    with pytest.raises(CompactFileError, match="does not match the sha256.*Restore it"):
        read_compact(path, "0" * 64)
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(CompactFileError, match="does not match"):
        read_compact(path, digest)
    with pytest.raises(CompactFileError, match="not a readable compact weights file"):
        read_compact(path)
    with pytest.raises(CompactFileError, match="no weights file"):
        read_compact(tmp_path / "absent.pt.xz")


def test_write_needs_the_config_to_rebuild_the_network(tmp_path):
    with pytest.raises(ValueError, match="config lacks"):
        write_compact(build_model("fastnet", None), {"model": "fastnet"}, tmp_path / "m.pt.xz")


def test_export_run_writes_the_file_and_its_record(tmp_path):
    data = synthetic_cifar10()
    run = tmp_path / "run"
    result = train("fastnet", "se", profile="tiny", data=data, out_dir=run, progress=False)
    out = tmp_path / "models" / "se.pt.xz"
    record = export_run(run, out, data, command="python -m cbam_tutorial compact run --out se.pt.xz")
    assert record_path(out) == tmp_path / "models" / "se.json"
    assert json.loads(record_path(out).read_text()) == record
    assert record["bytes"] == out.stat().st_size and record["file"] == "se.pt.xz"
    assert record["training"]["config"]["attention"] == "se"
    assert record["test_accuracy_run"] == result.test["accuracy"]
    assert 0 <= record["test_accuracy_stored"] <= 1
    assert read_compact(out, record["sha256"]).stages[0].attention is not None
    with pytest.raises(FileNotFoundError, match="has not finished"):
        export_run(tmp_path / "nothing", tmp_path / "x.pt.xz", data)


@pytest.mark.parametrize("attention", [None, "se", "cbam"])
def test_the_books_reference_models_are_small_checked_and_accurate(attention):
    from cbam_tutorial.book.reference import REFERENCE_MODELS, reference_model

    path = ROOT / "results" / REFERENCE_MODELS[attention]
    record = json.loads(record_path(path).read_text())
    assert path.stat().st_size == record["bytes"] <= 2 * 1024 * 1024
    assert sum((ROOT / "results" / p).stat().st_size for p in REFERENCE_MODELS.values()) <= 8 * 1024 * 1024
    book_model = reference_model(attention)
    assert book_model.test_accuracy == record["test_accuracy_stored"] >= 0.90
    assert record["training"]["config"]["attention"] == attention
    assert record["training"]["config"]["profile"]["name"] == "cpu"
    assert (book_model.model.stages[0].attention is None) == (attention is None)
