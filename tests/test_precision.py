"""Precision and profile on CUDA GPUs (capability queries mocked: no GPU here), and the fp16
path, GradScaler included, exercised for real on the CPU."""
from types import SimpleNamespace

import pytest
import torch

import cbam_tutorial.profiles as profiles
from cbam_test_models import synthetic_cifar10
from cbam_tutorial.devices import choose_device, choose_precision
from cbam_tutorial.profiles import choose_profile
from cbam_tutorial.train import train

# name, compute capability: what torch.cuda.get_device_properties reports for each card
GPUS = {"Tesla T4": (7, 5), "NVIDIA A100-SXM4-40GB": (8, 0), "NVIDIA H100 80GB HBM3": (9, 0)}
EXPECTED = {"Tesla T4": "fp16", "NVIDIA A100-SXM4-40GB": "bf16", "NVIDIA H100 80GB HBM3": "bf16"}


def pretend_gpu(monkeypatch, name):
    major, minor = GPUS[name]
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(name=name, major=major, minor=minor))
    # a T4 can emulate bf16, so the emulating query says yes: the engine must not ask that one
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)


def test_precision_and_profile_on_t4_a100_h100(monkeypatch):
    monkeypatch.delenv(profiles.PROFILE_ENV, raising=False)
    table = []
    for name in GPUS:
        pretend_gpu(monkeypatch, name)
        device = choose_device("auto")
        precision = choose_precision(device)
        profile = choose_profile(None, device)
        assert torch.cuda.is_bf16_supported() is True  # emulation counted: True even on the T4
        table.append((name, "%d.%d" % GPUS[name], precision, profile.name))
        assert device.type == "cuda" and precision == EXPECTED[name] and profile.name == "gpu"
    print("\n".join(f"{n:24s} capability {c}  precision {p}  profile {f}" for n, c, p, f in table))


@pytest.mark.parametrize("model", ["resnet20", "fastnet"])
def test_fp16_path_runs_on_the_cpu_with_its_grad_scaler_and_warns(monkeypatch, model):
    scales = []

    class RecordingScaler(torch.amp.GradScaler):
        def scale(self, outputs):
            scaled = super().scale(outputs)
            scales.append((scaled / outputs).item())
            return scaled

    monkeypatch.setattr(torch.amp, "GradScaler", RecordingScaler)
    # fp16 on a CPU is slow (a convolution's backward takes seconds per image): two batches of 8
    data = synthetic_cifar10(test_per_class=2)
    with pytest.warns(RuntimeWarning, match="fp16 on a CPU is emulated"):
        result = train(model, None, profile="tiny", precision="fp16", device="cpu", data=data,
                       train_subset=16, val_subset=20, batch_size=8, progress=False)
    assert result.config["precision"] == "fp16"
    assert len(scales) == 2 and scales[0] == pytest.approx(65536.0)  # GradScaler's initial scale: it is on
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
