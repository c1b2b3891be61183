"""Finding the student's weights by what they can do, in any storage.

An MLP layer may be an nn.Linear, a 1x1 nn.Conv2d, a kernel-1 nn.Conv1d or a raw parameter
used either way round (W or its transpose); the spatial gate's convolution an nn.Conv2d or
F.conv2d with its own bias. Every reading of the parameters that fits the shapes is
returned; the check keeps the one under which the paper's formula reproduces the output.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from .harness import fail


def _norm_parameters(module: nn.Module) -> set[int]:
    return {id(p) for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False)}


def _squeezed(parameter: torch.Tensor) -> torch.Tensor:
    """The parameter with its trailing size-1 dimensions dropped: a 1x1 Conv2d or kernel-1
    Conv1d weight (out, in, 1[, 1]) becomes the (out, in) matrix it acts as."""
    view = parameter
    while view.dim() > 2 and view.shape[-1] == 1:
        view = view[..., 0]
    return view


def mlp_readings(module: nn.Module, channels: int, reduction: int, what: str) -> list[dict]:
    """Every reading of the module's parameters as one shared MLP channels -> hidden -> channels:
    dicts of w1 (hidden, channels), b1, w2 (channels, hidden), b2 as differentiable views."""
    hidden = channels // reduction
    norms = _norm_parameters(module)
    named = [(name, p) for name, p in module.named_parameters() if id(p) not in norms]
    matrices = [(name, p) for name, p in named if _squeezed(p).dim() == 2]
    fitting = [(name, p) for name, p in matrices if sorted(_squeezed(p).shape) == sorted((channels, hidden))]
    if not fitting:
        sizes = sorted({other for _, p in matrices for other in _squeezed(p).shape
                        if channels in _squeezed(p).shape and other != channels})
        if sizes:
            fail(f"{what}({channels}, {reduction}) has an MLP with {sizes[0]} hidden "
                 f"units where channels // reduction = {hidden}: the reduction argument is ignored (a "
                 "hard-coded size?). Build the MLP from the constructor's arguments")
        if any(tuple(_squeezed(p).shape) == (channels, channels) for _, p in matrices):
            fail("the MLP maps channels to channels directly: CBAM's MLP has a bottleneck, channels -> "
                 "channels // reduction -> channels, with a ReLU between the two layers")
        shapes = [tuple(p.shape) for _, p in named]
        fail(f"expected a shared MLP {channels} -> {hidden} -> {channels} (hidden = channels // reduction) "
             f"for {what}({channels}, ...), found parameters of shapes {shapes}: is the channels argument "
             "ignored (a hard-coded size)?")
    if len(fitting) > 2:
        fail("found two MLPs (two sets of weights of the same shape): CBAM's channel attention sends "
             "the average- and the max-pooled descriptor through ONE shared MLP; build the MLP once "
             "and call it on both")
    if len(fitting) < 2:
        fail(f"found only one layer of the MLP ({fitting[0][0]}): the MLP is Linear -> ReLU -> Linear, "
             f"{channels} -> {hidden} -> {channels}")

    def oriented(p, rows, columns):
        m = _squeezed(p)
        return m if tuple(m.shape) == (rows, columns) else m.t()

    vectors = [p for _, p in named if p.dim() >= 1 and _squeezed(p).dim() == 1]
    first_biases = [p.reshape(-1) for p in vectors if p.numel() == hidden] or [None]
    second_biases = [p.reshape(-1) for p in vectors if p.numel() == channels] or [None]
    readings = []
    for a, b in itertools.permutations([p for _, p in fitting], 2):
        for b1, b2 in itertools.product(first_biases, second_biases):
            readings.append({"w1": oriented(a, hidden, channels), "b1": b1,
                             "w2": oriented(b, channels, hidden), "b2": b2})
    return readings


def spatial_readings(module: nn.Module, kernel_size: int, what: str) -> list[dict]:
    """Every reading of the module's parameters as the spatial gate's k x k convolution from 2
    maps to 1: dicts of kernel (1, 2, k, k), bias (1,) or None, and norm (a module or None)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_features == 1]
    norm_ids = _norm_parameters(module)
    named = [(name, p) for name, p in module.named_parameters() if id(p) not in norm_ids]
    kernels = [p for _, p in named if p.dim() == 4 and p.shape[:2] in ((1, 2), (2, 1))
               and p.shape[2] == p.shape[3]]
    if not kernels:
        one_map = [p for _, p in named if p.dim() == 4 and p.shape[:2] == (1, 1) and p.shape[-1] > 1]
        if one_map:
            fail("the convolution reads 1 map: concatenate the channel-wise mean AND max maps, (B, 2, H, W), "
                 "and convolve those 2 maps to 1")
        fail(f"expected one convolution from 2 maps to 1 (weight shape (1, 2, {kernel_size}, {kernel_size})); "
             f"found parameters of shapes {[tuple(p.shape) for _, p in named]}")
    right = [p for p in kernels if p.shape[-1] == kernel_size]
    if not right:
        fail(f"{what}({kernel_size}) has a {kernels[0].shape[-1]}x{kernels[0].shape[-1]} convolution: the "
             "kernel_size argument is ignored (a hard-coded size?). Use nn.Conv2d(2, 1, kernel_size, ...)")
    biases = [p.reshape(-1) for _, p in named if p.numel() == 1] or [None]
    readings = []
    for kernel, bias in itertools.product(right, biases):
        kernel = kernel if kernel.shape[:2] == (1, 2) else kernel.transpose(0, 1)
        for norm in (norms[:1] or [None]):
            readings.append({"kernel": kernel, "bias": bias, "norm": norm})
    return readings
