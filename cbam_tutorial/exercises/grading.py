"""Comparing the student's output with the formula's: values, gradients, and when they
differ, the diagnosis that names the mistake or the step that differs.
"""
from __future__ import annotations

import torch
from torch import nn

from .harness import fail


def close(a, b) -> bool:
    """True when a and b are tensors of one shape with the same values (to float32 noise)."""
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and bool(torch.allclose(a.detach().double(), b.detach().double(), atol=1e-5, rtol=1e-4)))


def check_gradients(what: str, module: nn.Module, leaf: torch.Tensor, out: torch.Tensor,
                    expected: torch.Tensor, seed: int) -> None:
    """The student's gradients (to the input and every parameter) against the formula's."""
    names, parameters = zip(*module.named_parameters()) if list(module.parameters()) else ((), ())
    if not out.requires_grad:
        fail(f"{what}'s output carries no gradient at all: the computation is cut off from autograd "
             "(torch.no_grad(), .detach() or .data); the attention could never learn")
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    inputs = (leaf, *parameters)
    theirs = torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True, retain_graph=True)
    ours = torch.autograd.grad((expected * weight).sum(), inputs, allow_unused=True, retain_graph=True)
    missing = [name for name, t, o in zip(names, theirs[1:], ours[1:])
               if (t is None or not t.any()) and o is not None and o.any()]
    if missing:
        fail(f"the parameter(s) {', '.join(missing)} never receive a gradient, so they could never learn: "
             "the gate is computed under torch.no_grad() or .detach()ed (or .data is used); compute it "
             "as part of the graph")
    unused = [name for name, t, o in zip(names, theirs[1:], ours[1:]) if t is None and o is None]
    if unused:
        fail(f"the parameter(s) {', '.join(unused)} are never used in forward: remove them, or use them "
             "where the formula needs them")
    if theirs[0] is None or not close(theirs[0], ours[0]):
        fail(f"{what} gives the right values but the wrong gradient to its input: part of the computation "
             "is detached (e.g. the gate or a pooled map .detach()ed, or built with .data)")
    for name, t, o in zip(names, theirs[1:], ours[1:]):
        if o is not None and not close(t, o):
            fail(f"{what} gives the right values but the wrong gradient to {name}: part of the computation "
                 "is detached or computed outside autograd")

def step_that_differs(out: torch.Tensor, x: torch.Tensor, expected_gate: torch.Tensor, kind: str) -> str:
    """For the general message: what the output's implied gate (out / x) says about the step that differs."""
    if out.shape != x.shape:
        return f"the output has shape {tuple(out.shape)} for an input of shape {tuple(x.shape)}"
    safe = x.abs() > 1e-3
    implied = torch.where(safe, out / torch.where(safe, x, torch.ones_like(x)), torch.nan)
    axis = (2, 3) if kind == "channel" else 1
    spread = (implied - implied.nanmean(dim=axis, keepdim=True)).abs().nan_to_num(0).amax()
    if spread > 1e-3:
        one = "one weight per channel, (B, C, 1, 1)" if kind == "channel" else "one map for all channels, (B, 1, H, W)"
        return f"out / x is not a gate of the right shape: the {kind} gate must be {one}, multiplied with x"
    values = implied.nan_to_num(0.5)
    if values.min() < -1e-4 or values.max() > 1 + 1e-4:
        return (f"the implied {kind} weights out / x range from {values.min().item():.2f} to "
                f"{values.max().item():.2f}, outside (0, 1): the last step before multiplying must be a sigmoid")
    return (f"the implied {kind} weights (out / x) are in (0, 1) and shaped right but differ from the formula's "
            f"by up to {(implied - expected_gate).abs().nan_to_num(0).amax().item():.3g}: check the pooling and "
            f"the {'shared MLP' if kind == 'channel' else 'convolution'} step by step against the chapter")


def diagnose(what, out, outputs_by_reading: list[dict], messages: dict, step: str, convolution=False) -> None:
    """Name the known mistake whose output matches, or say which step differs."""
    for outputs in outputs_by_reading:
        for name, candidate in outputs.items():
            if name != "correct" and name in messages and close(out, candidate):
                fail(messages[name])
    if convolution and out.dim() == 4 and out.shape[-2:] != outputs_by_reading[0]["correct"].shape[-2:]:
        fail(f"{what} returns maps of {tuple(out.shape[-2:])} pixels for inputs of "
             f"{tuple(outputs_by_reading[0]['correct'].shape[-2:])}: pad the convolution by kernel_size // 2 "
             "(or padding='same') so the map keeps the input's H x W")
    fail(f"{what}'s output differs from the formula: {step}")

