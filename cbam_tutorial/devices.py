"""Where a run computes and in which precision: the device (CUDA, Apple MPS or the CPU)
and bf16, fp16 or fp32, chosen from what the hardware computes natively.

    device = choose_device()                  # CUDA, then MPS, then the CPU
    precision = choose_precision(device)      # "bf16", "fp16" (older GPUs) or "fp32"
"""
from __future__ import annotations

import warnings

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU; or the requested one, if it exists here."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {requested!r}; choose one of 'auto', 'cpu', 'cuda', 'mps'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available here; use 'auto' or 'cpu'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple MPS is not available here; use 'auto' or 'cpu'")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {requested!r}; choose one of 'auto', 'cpu', 'cuda', 'mps'")
    return device


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_supports_bf16() -> bool:
    """True on GPUs that compute bf16 natively (compute capability 8.0 and later: A100, H100, ...).

    A T4 (7.5) answers torch.cuda.is_bf16_supported() with True because it can emulate bf16,
    slowly; here it counts as unsupported, so it trains in fp16 with a GradScaler.
    """
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """bf16 where the device computes it natively, fp16 on older GPUs, fp32 otherwise."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(map(repr, PRECISIONS))}")
    if requested == "fp16" and device.type == "cpu":
        warnings.warn("fp16 on a CPU is emulated and runs many times slower than bf16 or fp32; "
                      "use precision='auto' (bf16 where the CPU supports it) unless you are testing the "
                      "fp16 code path", RuntimeWarning, stacklevel=3)
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if cuda_supports_bf16() else "fp16"
    if device.type == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"
