"""The checks of chapters 2 to 4: channel attention, spatial attention and CBAM.

Each builds the student's class with two different sets of constructor arguments (so a
hard-coded size is caught), runs it on several random inputs and shapes, and compares
values and gradients with the paper's formula under every reading of the student's
weights.
"""
from __future__ import annotations

import itertools

import torch

from .formulas import (
    ARRANGEMENT_FORMULAS, CHANNEL_MESSAGES, SPATIAL_MESSAGES, cbam_outputs, channel_gate, channel_gates,
    gated_outputs, spatial_gate, spatial_gates)
from .grading import check_gradients, close, diagnose, step_that_differs
from .harness import build_student_module, fail, passed, randomise, run_student_forward
from .readings import mlp_readings, spatial_readings


# ----------------------------------------------------------------------------- channel attention


CHANNEL_CONSTRUCTIONS = ((12, 4), (32, 8))  # (channels, reduction): hidden 3 and 4


def _check_channel_on(module, channels, hidden, x, seed, worked, what="ChannelAttention") -> None:
    readings = mlp_readings(module, channels, channels // hidden, what)
    leaf, out = run_student_forward(module, x, worked)
    shape = lambda g: g[:, :, None, None]  # noqa: E731
    for weights in readings:
        expected = leaf * shape(channel_gate(leaf, weights))
        if close(out, expected):
            check_gradients(what, module, leaf, out, expected, seed)
            return
    with torch.no_grad():
        outputs = [gated_outputs(x, channel_gates(x, weights), shape) for weights in readings]
        expected_gate = shape(channel_gate(x, readings[0]))
    step = step_that_differs(out.detach(), x, expected_gate, "channel")
    diagnose(what, out.detach(), outputs, CHANNEL_MESSAGES, step)


def check_channel_attention(student_class, channels: int | None = None, reduction: int | None = None) -> str:
    """Check `student_class(channels, reduction)` against M_c(F) = sigmoid(MLP(avg) + MLP(max)),
    out = F * M_c(F). By default it is built twice, as (12, 4) and (32, 8)."""
    constructions = ((channels, reduction),) if channels else CHANNEL_CONSTRUCTIONS
    for number, (c, r) in enumerate(constructions):
        module = build_student_module(student_class, (c, r), what="ChannelAttention")
        worked: list = []
        for seed, shape in enumerate([(2, c, c, c), (3, c, 5, 7)]):
            randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(100 + 10 * number + seed))
            _check_channel_on(module, c, c // r, x, seed, worked)
    return passed("ChannelAttention")


# ----------------------------------------------------------------------------- spatial attention


SPATIAL_KERNELS = (7, 3)


def _spatial_expected(leaf, parts):
    return {order: leaf * spatial_gate(leaf, parts, order) for order in ("mean-max", "max-mean")}


def _check_spatial_on(module, kernel_size, x, seed, worked, what="SpatialAttention") -> None:
    readings = spatial_readings(module, kernel_size, what)
    leaf, out = run_student_forward(module, x, worked)
    for parts in readings:
        for expected in _spatial_expected(leaf, parts).values():
            if close(out, expected):
                check_gradients(what, module, leaf, out, expected, seed)
                return
    with torch.no_grad():
        outputs = [gated_outputs(x, spatial_gates(x, parts, order), lambda g: g)
                   for parts in readings for order in ("mean-max", "max-mean")]
        expected_gate = spatial_gate(x, readings[0], "mean-max")
    step = step_that_differs(out.detach(), x, expected_gate, "spatial")
    diagnose(what, out.detach(), outputs, SPATIAL_MESSAGES, step, convolution=True)


def check_spatial_attention(student_class, kernel_size: int | None = None) -> str:
    """Check `student_class(kernel_size)` against M_s(F) = sigmoid(conv_kxk([mean(F); max(F)])),
    out = F * M_s(F) (either map order; a BatchNorm after the convolution is allowed). By
    default it is built twice, with kernel sizes 7 and 3."""
    for number, k in enumerate((kernel_size,) if kernel_size else SPATIAL_KERNELS):
        module = build_student_module(student_class, (k,), what="SpatialAttention")
        worked: list = []
        for seed, shape in enumerate([(2, 8, 9, 9), (3, 5, 6, 11)]):
            randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(200 + 10 * number + seed))
            _check_spatial_on(module, k, x, seed, worked)
    return passed("SpatialAttention")


# ----------------------------------------------------------------------------- CBAM


ARRANGEMENTS = ("channel-spatial", "spatial-channel", "parallel")
CBAM_CONSTRUCTIONS = ((16, 4, 7), (24, 8, 3))


def check_cbam(student_class, arrangement: str = "channel-spatial", channels: int | None = None,
               reduction: int | None = None, kernel_size: int | None = None) -> str:
    """Check `student_class(channels, reduction, kernel_size)` against CBAM in `arrangement`:
    "channel-spatial" (the paper's), "spatial-channel" or "parallel" (x * M_c(x) * M_s(x)).
    By default it is built twice, as (16, 4, 7) and (24, 8, 3)."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"unknown arrangement {arrangement!r}; choose one of {', '.join(ARRANGEMENTS)}")
    constructions = ((channels, reduction, kernel_size),) if channels else CBAM_CONSTRUCTIONS
    for number, (c, r, k) in enumerate(constructions):
        module = build_student_module(student_class, (c, r, k), what="CBAM")
        worked: list = []
        for seed, shape in enumerate([(2, c, 8, 8), (2, c, 5, 9)]):
            randomise(module, 10 * number + seed)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(300 + 10 * number + seed))
            readings = [(w, s) for w in mlp_readings(module, c, r, "CBAM")
                        for s in spatial_readings(module, k, "CBAM")]
            leaf, out = run_student_forward(module, x, worked)
            matched = False
            for (weights, parts), order in itertools.product(readings, ("mean-max", "max-mean")):
                expected = cbam_outputs(leaf, weights, parts, order)[arrangement]
                if close(out, expected):
                    check_gradients("CBAM", module, leaf, out, expected, seed)
                    matched = True
                    break
            if matched:
                continue
            with torch.no_grad():
                for (weights, parts), order in itertools.product(readings, ("mean-max", "max-mean")):
                    for name, candidate in cbam_outputs(x, weights, parts, order).items():
                        if close(out, candidate):
                            if name.endswith("only"):
                                fail(f"the block applies {name.replace(' only', '')} attention only: CBAM "
                                     f"refines the features with both gates, {ARRANGEMENT_FORMULAS[arrangement]}")
                            if name == "parallel sum":
                                fail("the two gates are added (x * (M_c + M_s)): they multiply, "
                                     f"{ARRANGEMENT_FORMULAS[arrangement]}")
                            if name == "residual":
                                fail(CHANNEL_MESSAGES["one plus gate"])
                            fail(f"the block implements the {name} arrangement, but the exercise asks for "
                                 f"{arrangement}: {ARRANGEMENT_FORMULAS[arrangement]}")
            fail("the output matches no arrangement of the two gates; check each gate on its own with "
                 "check_channel_attention and check_spatial_attention first")
    return passed(f"CBAM ({arrangement})")


