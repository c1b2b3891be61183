"""Fused CPU path for CBAM (avg+max pooling in both gates, any of the three arrangements).

Why it exists: on a CPU, CBAM's cost is memory traffic, not arithmetic. Written plainly
(as in attention.py), the block makes a dozen passes over a (B, C, H, W) tensor in the
forward pass and more in the backward (mean and amax backward each write a full tensor,
and autograd sums them). Here the big tensor is read by a few C++ loops (csrc/cbam_gate.cpp).
The small parts keep their modules' own parameters and buffers: the MLP on (B, 2, C)
descriptors runs through ordinary autograd; the spatial gate's k x k convolution on
(B, 2, H, W) maps and its one-channel BatchNorm run on two more kernels, because PyTorch's
general ones are slow for one or two channels (its BatchNorm gives a channel one thread).

It computes the same function as CBAM's plain path (tests/test_fused.py checks values and
gradients). Two differences, both documented: at a tie for a maximum the whole gradient
goes to the first maximal element (a valid subgradient; amax splits it), and the attention
weights it hands back are detached.

The C++ code is compiled on first use with torch.utils.cpp_extension (a C++ compiler and
the ninja package are needed; it takes about a minute, then is cached for every checkout
of the same code). If compiling fails, or CBAM_TUTORIAL_FUSED=0 is set, CBAM silently
keeps the plain path.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from .settings import current_settings
from .storage import write_atomically

_SOURCE = Path(__file__).parent / "csrc" / "cbam_gate.cpp"


_FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp"]


def _cpu_features() -> bytes:
    """The CPU's instruction-set flags (Linux: "flags" on x86, "Features" on Arm), else its
    name: -march=native compiles for this CPU, so a cache shared with another CPU must not
    serve its build."""
    named = f"{platform.machine()} {platform.processor()}".encode()
    try:
        with open("/proc/cpuinfo", "rb") as info:
            return next((line for line in info if line.startswith((b"flags", b"Features"))), named)
    except OSError:
        return named


def build_folder(name: str, flags: list[str], source: bytes) -> Path:
    """Where this build of the kernels is compiled and cached: a folder under torch's
    extensions root ($TORCH_EXTENSIONS_DIR, else its default) named by everything the
    build depends on (the source's bytes, the flags, the CPU's features, the Python and
    torch versions).

    torch's own cache is keyed by the folder name alone and rebuilds when the source's
    path changes, so a second checkout or a Colab runtime's fresh clone recompiled the same
    code (about 40 s on 2 cores); compiled from a copy in this folder, it compiles once.
    """
    from torch.utils.cpp_extension import get_default_build_root

    digest = hashlib.sha256(b"\0".join([source, *map(str.encode, flags), _cpu_features(), sys.version.encode(),
                                        torch.__version__.encode()]))
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    return Path(root) / f"{name}-{digest.hexdigest()[:16]}"


def compile_kernels(name: str = "cbam_tutorial_gate", extra_cflags: tuple = ()):
    """Compile (cached on disk, see build_folder) and return the C++ module; raises if it cannot.

    extra_cflags: added to the flags, e.g. ("-mno-avx512f", "-mno-avx2") builds the portable loops only.
    """
    import logging

    # importing cpp_extension on a CUDA build without a GPU logs "No CUDA runtime is
    # found"; this extension is CPU-only, so the line is noise (it showed in the book)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.cpp_extension import load

    flags = [*_FLAGS, *extra_cflags]
    source = _SOURCE.read_bytes()
    folder = build_folder(name, flags, source)
    copy = folder / _SOURCE.name
    if not copy.is_file() or copy.read_bytes() != source:
        # processes that compile at once (a grid's workers) each write whole files
        write_atomically(copy, lambda handle: handle.write(source))
    return load(name=name, sources=[str(copy)], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                build_directory=str(folder), verbose=False)


@lru_cache(maxsize=1)
def load_extension():
    """Compile (once, cached on disk) and return the C++ module, or None if unavailable."""
    if not current_settings().fused:
        return None
    try:
        return compile_kernels()
    except Exception as error:  # no compiler, no ninja, unsupported platform
        warnings.warn(f"fused CBAM kernels unavailable, using the plain path: {error}", stacklevel=2)
        return None


def fused_applies(module, x: torch.Tensor) -> bool:
    """True when `module` (a CBAM) can run on `x` through the fused kernels."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.is_contiguous(memory_format=torch.channels_last)
        and x.shape[2] * x.shape[3] > 1  # a 1x1 map is contiguous in both layouts
        and module.channel_attention.pooling == "avg+max"
        and module.spatial_attention.pooling == "avg+max"
        # the small gates run in float32 on the kernels' float32 statistics
        and all(p.dtype == torch.float32 for p in module.parameters())
        and not torch.jit.is_scripting()
        and load_extension() is not None
    )


def _ordered(module, max_map: torch.Tensor, mean_map: torch.Tensor):
    if module.spatial_attention.map_order == "max-mean":
        return max_map, mean_map
    return mean_map, max_map


class _GateConvolution(torch.autograd.Function):
    """The spatial gate's k x k convolution (B, 2, H, W) -> (B, 1, H, W), direct loops."""

    @staticmethod
    def forward(ctx, maps, weight):
        ctx.save_for_backward(maps, weight)
        return load_extension().gate_conv_forward(maps, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        maps, weight = ctx.saved_tensors
        grad_maps, grad_weight = load_extension().gate_conv_backward(grad_out, maps, weight)
        return grad_maps, grad_weight


class _GateNorm(torch.autograd.Function):
    """BatchNorm of one channel with batch statistics: z (B, 1, H, W) -> (y, mean (1,), var (1,))."""

    @staticmethod
    def forward(ctx, z, weight, bias, eps):
        y, mean, var = load_extension().gate_norm_forward(z, weight, bias, eps)
        ctx.save_for_backward(z, weight, mean, var)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        z, weight, mean, var = ctx.saved_tensors
        grad_z, grad_weight, grad_bias = load_extension().gate_norm_backward(
            grad_y.contiguous(), z, weight, mean, var, ctx.eps)
        return grad_z, grad_weight, grad_bias, None


def _normalized(norm, z: torch.Tensor) -> torch.Tensor:
    """norm(z) for the spatial gate's norm: (B, 1, H, W) -> (B, 1, H, W).

    A training BatchNorm runs on the kernels (PyTorch's gives one channel one thread) and
    updates its running statistics as nn.BatchNorm2d does; anything else runs as it is.
    """
    if not (isinstance(norm, nn.BatchNorm2d) and norm.training and norm.affine and norm.track_running_stats):
        return norm(z)
    y, mean, var = _GateNorm.apply(z, norm.weight, norm.bias, norm.eps)
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / norm.num_batches_tracked.item()
        count = z.numel()  # running_var keeps the unbiased variance
        norm.running_mean.lerp_(mean, momentum)
        norm.running_var.lerp_(var * (count / (count - 1)), momentum)
    return y


def _spatial_gate(spatial_attention, maps: torch.Tensor) -> torch.Tensor:
    """SpatialAttention.gate on the kernels: (B, 2, H, W) -> (B, 1, H, W)."""
    conv = spatial_attention.conv
    out = _GateConvolution.apply(maps, conv.weight)
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1, 1)
    return torch.sigmoid(_normalized(spatial_attention.norm, out))


def _ones(batch: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """A gate that lets everything through: (batch, size) float32 ones on x's device."""
    return torch.ones(batch, size, dtype=torch.float32, device=like.device)


def _channel_gate_from(module, avg, mx, build_graph: bool):
    """The MLP on the pooled descriptors: avg, max (B, C) -> (descriptors (B, 2, C), gate (B, C))."""
    with torch.set_grad_enabled(build_graph), torch.autocast(avg.device.type, enabled=False):
        descriptors = torch.stack([avg, mx], dim=1).requires_grad_(build_graph)
        return descriptors, module.channel_attention.gate(descriptors)


def _spatial_gate_from(module, smax, smean, shape, build_graph: bool):
    """The k x k gate on the pooled maps: (B, H*W) each -> (maps (B, 2, H, W), gate (B, 1, H, W))."""
    batch, height, width = shape
    with torch.set_grad_enabled(build_graph), torch.autocast(smax.device.type, enabled=False):
        maps = torch.stack(_ordered(module, smax, smean), dim=1)
        maps = maps.view(batch, 2, height, width).requires_grad_(build_graph)
        return maps, _spatial_gate(module.spatial_attention, maps)


def _forward(ext, module, x: torch.Tensor, build_graph: bool):
    """Pooling and gating through the kernels; the small gates through their modules.

    The gate computed second pools x as the first gate refined it (channel-spatial: the
    spatial maps of x * M_c; spatial-channel: the channel descriptors of x * M_s), or x
    itself (parallel). Returns out (B, C, H, W), the graph pieces
    (descriptors, channel gate, maps, spatial gate), the argmax indices, and the weights each
    pooling saw x through (map_gate (B, C) for the spatial maps, pool_gate (B, H*W) for the
    channel descriptors) for the backward.
    """
    batch, channels, height, width = x.shape
    shape = (batch, height, width)
    if module.arrangement == "spatial-channel":
        map_gate = _ones(batch, channels, x)
        smax, smean, argmax_s = ext.spatial_pool(x, map_gate)
        maps, spatial = _spatial_gate_from(module, smax, smean, shape, build_graph)
        pool_gate = spatial.detach().view(batch, -1)
        avg, mx, argmax_c = ext.channel_pool(x, pool_gate)
        descriptors, channel = _channel_gate_from(module, avg, mx, build_graph)
    else:
        pool_gate = _ones(batch, height * width, x)
        avg, mx, argmax_c = ext.channel_pool(x, pool_gate)
        descriptors, channel = _channel_gate_from(module, avg, mx, build_graph)
        map_gate = channel.detach() if module.arrangement == "channel-spatial" else _ones(batch, channels, x)
        smax, smean, argmax_s = ext.spatial_pool(x, map_gate)
        maps, spatial = _spatial_gate_from(module, smax, smean, shape, build_graph)
    out = ext.apply_gates(x, channel.detach(), spatial.detach().view(batch, -1))
    return out, (descriptors, channel, maps, spatial), (argmax_c, argmax_s), (map_gate, pool_gate)


class _FusedGates(torch.autograd.Function):
    """CBAM's output in any arrangement; hand-written backward over the big tensor."""

    @staticmethod
    def forward(ctx, x, module, n_channel_params, *params):
        ext = load_extension()
        out, graph, argmaxes, seen_through = _forward(ext, module, x, build_graph=True)
        ctx.save_for_backward(x, *argmaxes)
        ctx.graph, ctx.seen_through, ctx.module = graph, seen_through, module
        ctx.channel_params = params[:n_channel_params]
        ctx.spatial_params = params[n_channel_params:]
        channel, spatial = graph[1].detach(), graph[3].detach()
        ctx.mark_non_differentiable(channel, spatial)
        return out, channel, spatial

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_channel, _grad_spatial):
        ext = load_extension()
        x, argmax_c, argmax_s = ctx.saved_tensors
        descriptors, channel, maps, spatial = ctx.graph
        arrangement = ctx.module.arrangement
        batch, channels, height, width = x.shape
        g = grad_out.to(x.dtype).contiguous(memory_format=torch.channels_last)
        channel_flat = channel.detach()
        spatial_flat = spatial.detach().view(batch, -1)

        def through_channel_gate(grad_channel):
            grads = torch.autograd.grad(channel, (descriptors, *ctx.channel_params), grad_channel,
                                        allow_unused=True)
            grad_avg, grad_cmax = grads[0].unbind(dim=1)
            return (grad_avg / (height * width)).contiguous(), grad_cmax.contiguous(), grads[1:]

        def through_spatial_gate(grad_spatial):
            grads = torch.autograd.grad(spatial, (maps, *ctx.spatial_params), grad_spatial.view_as(spatial),
                                        allow_unused=True)
            first, second = grads[0].flatten(2).unbind(dim=1)
            grad_smax, grad_smean = _ordered(ctx.module, first, second)
            return (grad_smean / channels).contiguous(), grad_smax.contiguous(), grads[1:]

        grad_spatial, grad_channel = ext.backward_gates(g, x, channel_flat, spatial_flat)
        map_gate, pool_gate = ctx.seen_through
        if arrangement == "spatial-channel":  # the channel gate saw x * M_s: its grads reach M_s
            grad_avg, grad_cmax, channel_param_grads = through_channel_gate(grad_channel)
            grad_spatial = grad_spatial + ext.backward_spatial_through_pools(x, grad_avg, grad_cmax, argmax_c)
            grad_smean, grad_smax, spatial_param_grads = through_spatial_gate(grad_spatial)
        else:
            grad_smean, grad_smax, spatial_param_grads = through_spatial_gate(grad_spatial)
            if arrangement == "channel-spatial":  # the spatial gate saw x * M_c: its grads reach M_c
                grad_channel = grad_channel + ext.backward_channel_through_maps(x, grad_smean, grad_smax, argmax_s)
            grad_avg, grad_cmax, channel_param_grads = through_channel_gate(grad_channel)
        grad_x = ext.backward_input(g, channel_flat, spatial_flat, map_gate, grad_smean, grad_smax, argmax_s,
                                    pool_gate, grad_avg, grad_cmax, argmax_c)
        del ctx.graph, ctx.seen_through
        return (grad_x, None, None, *channel_param_grads, *spatial_param_grads)


def fused_cbam(module, x: torch.Tensor):
    """Run CBAM `module` on channels_last `x` (B, C, H, W) through the fused kernels.

    Returns (out (B, C, H, W), channel weights (B, C, 1, 1), spatial weights (B, 1, H, W)).
    """
    channel_params = [p for p in module.channel_attention.parameters() if p.requires_grad]
    spatial_params = [p for p in module.spatial_attention.parameters() if p.requires_grad]
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or bool(channel_params) or bool(spatial_params)
    )
    if needs_grad:
        out, channel, spatial = _FusedGates.apply(
            x, module, len(channel_params), *channel_params, *spatial_params
        )
    else:
        out, (_, channel, _, spatial), _, _ = _forward(load_extension(), module, x, build_graph=False)
    return out, channel[:, :, None, None], spatial
