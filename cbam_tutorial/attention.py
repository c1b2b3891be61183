"""Attention modules: channel attention, spatial attention, CBAM and squeeze-and-excitation.

Every module maps a feature map of shape (B, C, H, W) to one of the same shape and can
hand back the attention weights it applied, so that a figure needs no second forward pass:

    out, weights = module(x, return_attention=True)
    weights["channel"]   # (B, C, 1, 1), values in (0, 1)
    weights["spatial"]   # (B, 1, H, W), values in (0, 1)

The variants that differ between public implementations are explicit arguments. Their
defaults follow the reference implementation of Woo et al. (the authors' repository):

    ChannelAttention(mlp_bias=True, hidden_rounding="floor")   hidden = C // r, Linear with bias
    SpatialAttention(batch_norm=True, map_order="max-mean")    cat([max, mean]), conv, BN, sigmoid

timm's CbamModule differs in three of these: mlp_bias=False, map_order="mean-max" and
hidden = round(C / r) ("nearest"). With those arguments the modules compute the same
function as timm's (checked in tests/test_attention_reference.py).
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

CHANNEL_POOLINGS = ("avg", "max", "avg+max")
SPATIAL_POOLINGS = ("avg+max", "conv1x1")
ARRANGEMENTS = ("channel-spatial", "spatial-channel", "parallel")
MAP_ORDERS = ("max-mean", "mean-max")
HIDDEN_ROUNDINGS = ("floor", "nearest")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")


def check_feature_map(x: torch.Tensor, channels: int | None = None) -> None:
    """Raise a ValueError unless `x` has shape (B, C, H, W), with C == channels if given."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a 4-D feature map of shape (B, C, H, W), got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"expected {channels} channels (shape (B, {channels}, H, W)), got shape {tuple(x.shape)}"
        )


def _is_integer(value) -> bool:
    """An int and not a bool (True would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def reduced_channels(channels: int, reduction: int, rounding: str = "floor") -> int:
    """Width of the bottleneck of the channel MLP: C // r ("floor") or round(C / r) ("nearest")."""
    _check_choice("hidden_rounding", rounding, HIDDEN_ROUNDINGS)
    if not _is_integer(channels) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if not _is_integer(reduction) or reduction < 1:
        raise ValueError(f"reduction must be a positive integer, got {reduction!r}")
    if reduction > channels:
        raise ValueError(
            f"reduction={reduction} is larger than channels={channels}: the MLP's hidden layer "
            f"would have no units; use a reduction of at most {channels}"
        )
    hidden = channels // reduction if rounding == "floor" else int(channels / reduction + 0.5)
    return max(hidden, 1)


class _RecordsAttention(nn.Module):
    """Shared plumbing: optionally keep or return the weights a module applied."""

    def __init__(self) -> None:
        super().__init__()
        self.keep_attention = False  # when True, `last_attention` holds the latest weights
        self.last_attention: dict[str, torch.Tensor] | None = None

    def _finish(self, out: torch.Tensor, weights: dict, return_attention: bool):
        if self.keep_attention:
            self.last_attention = {name: w.detach() for name, w in weights.items()}
        return (out, weights) if return_attention else out


class ChannelAttention(_RecordsAttention):
    """Channel attention (CBAM's CAM): which channels matter.

    M_c(F) = sigmoid(MLP(pool_1(F)) + MLP(pool_2(F)) + ...), one MLP shared by the pooled
    descriptors, then out = F * M_c(F) broadcast over H and W.

    Args:
        channels: C, the number of input channels.
        reduction: r; the MLP is C -> hidden -> C with hidden = C / r (see hidden_rounding).
        pooling: "avg", "max" or "avg+max" (global pooling over H and W).
        mlp_bias: biases in both MLP layers (the reference implementation has them).
        hidden_rounding: "floor" (C // r, reference) or "nearest" (round(C / r), timm).

    Shapes: x (B, C, H, W) -> out (B, C, H, W); weights["channel"] (B, C, 1, 1).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pooling: str = "avg+max",
        mlp_bias: bool = True,
        hidden_rounding: str = "floor",
    ) -> None:
        super().__init__()
        _check_choice("channel pooling", pooling, CHANNEL_POOLINGS)
        hidden = reduced_channels(channels, reduction, hidden_rounding)
        self.channels = channels
        self.pooling = pooling
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=mlp_bias),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=mlp_bias),
        )

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global descriptors: (B, C, H, W) -> (B, P, C), P = 1 or 2 ([avg, max] order)."""
        descriptors = []
        if "avg" in self.pooling:
            descriptors.append(x.mean(dim=(2, 3)))
        if "max" in self.pooling:
            descriptors.append(x.amax(dim=(2, 3)))
        return torch.stack(descriptors, dim=1)

    def gate(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Shared MLP on each descriptor, summed, sigmoid: (B, P, C) -> (B, C)."""
        return torch.sigmoid(self.mlp(descriptors).sum(dim=1))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        check_feature_map(x, self.channels)
        weights = self.gate(self.pool(x))[:, :, None, None]
        return self._finish(x * weights, {"channel": weights}, return_attention)


class SEBlock(ChannelAttention):
    """Squeeze-and-excitation (Hu et al., 2018), the paper's baseline.

    SE is channel attention with global average pooling only (the paper's Table 1 row
    "AvgPool"): sigmoid(MLP(avgpool(F))), applied as a channel gate.

    Shapes: x (B, C, H, W) -> out (B, C, H, W); weights["channel"] (B, C, 1, 1).
    """

    def __init__(self, channels: int, reduction: int = 16, mlp_bias: bool = True,
                 hidden_rounding: str = "floor") -> None:
        super().__init__(channels, reduction, pooling="avg", mlp_bias=mlp_bias,
                         hidden_rounding=hidden_rounding)


class SpatialAttention(_RecordsAttention):
    """Spatial attention (CBAM's SAM): where to look.

    M_s(F) = sigmoid(BN(conv_kxk(maps(F)))), out = F * M_s(F) broadcast over channels, with
    maps(F) either the channel-wise max and mean maps (pooling="avg+max", 2 maps) or one
    map from a learned 1x1 convolution C -> 1 (pooling="conv1x1", the paper's Table 2
    alternative; it needs `channels`).

    Args:
        kernel_size: odd k of the k x k convolution (padding k // 2 keeps H and W).
        pooling: "avg+max" or "conv1x1".
        channels: C, required for pooling="conv1x1" and checked against the input if given.
        batch_norm: BatchNorm after the convolution (reference: yes; the convolution then
            has no bias, otherwise it has one).
        map_order: "max-mean" (reference) or "mean-max" (timm): the order of the two maps.

    Shapes: x (B, C, H, W) -> out (B, C, H, W); weights["spatial"] (B, 1, H, W).
    """

    def __init__(
        self,
        kernel_size: int = 7,
        pooling: str = "avg+max",
        channels: int | None = None,
        batch_norm: bool = True,
        map_order: str = "max-mean",
    ) -> None:
        super().__init__()
        _check_choice("spatial pooling", pooling, SPATIAL_POOLINGS)
        _check_choice("map_order", map_order, MAP_ORDERS)
        if not _is_integer(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be a positive odd integer (e.g. 3 or 7) so that padding "
                f"k // 2 keeps the map's size, got {kernel_size!r}"
            )
        if pooling == "conv1x1" and channels is None:
            raise ValueError("pooling='conv1x1' learns a 1x1 convolution C -> 1: pass channels=C")
        self.channels = channels
        self.pooling = pooling
        self.kernel_size = kernel_size
        self.map_order = map_order
        self.squeeze = nn.Conv2d(channels, 1, 1) if pooling == "conv1x1" else None
        in_maps = 1 if pooling == "conv1x1" else 2
        self.conv = nn.Conv2d(in_maps, 1, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        # momentum 0.01 as in the reference implementation
        self.norm = nn.BatchNorm2d(1, momentum=0.01) if batch_norm else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-wise maps: (B, C, H, W) -> (B, 2, H, W) (or (B, 1, H, W) for conv1x1)."""
        if self.squeeze is not None:
            return self.squeeze(x)
        max_map = x.amax(dim=1, keepdim=True)
        mean_map = x.mean(dim=1, keepdim=True)
        pair = (max_map, mean_map) if self.map_order == "max-mean" else (mean_map, max_map)
        return torch.cat(pair, dim=1)

    def gate(self, maps: torch.Tensor) -> torch.Tensor:
        """k x k convolution, BatchNorm, sigmoid: (B, 2, H, W) -> (B, 1, H, W)."""
        return torch.sigmoid(self.norm(self.conv(maps)))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        check_feature_map(x, self.channels)
        weights = self.gate(self.pool(x))
        return self._finish(x * weights, {"spatial": weights}, return_attention)


class CBAM(_RecordsAttention):
    """Convolutional Block Attention Module: channel and spatial attention combined.

    With M_c = channel attention and M_s = spatial attention, F the input:

    - "channel-spatial" (the paper's choice): F' = F * M_c(F);  out = F' * M_s(F').
    - "spatial-channel":                      F' = F * M_s(F);  out = F' * M_c(F').
    - "parallel": both gates are computed from the same input and applied together,
      out = F * M_c(F) * M_s(F). (Neither gate sees the other's output; since the gates
      multiply, the order in which they are applied does not matter.)

    Args:
        channels, reduction, channel_pooling, mlp_bias, hidden_rounding: see ChannelAttention.
        kernel_size, spatial_pooling, batch_norm, map_order: see SpatialAttention.
        arrangement: "channel-spatial", "spatial-channel" or "parallel".
        fused: use the fused CPU kernels (cbam_tutorial.fused) when they apply: avg+max
            pooling in both gates, float32 weights, a channels_last float32 or bfloat16
            tensor on the CPU (any arrangement). They compute the same function with fewer passes over
            memory; everywhere else, or with fused=False, the plain code below runs.

    Shapes: x (B, C, H, W) -> out (B, C, H, W); weights["channel"] (B, C, 1, 1) and
    weights["spatial"] (B, 1, H, W).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        arrangement: str = "channel-spatial",
        channel_pooling: str = "avg+max",
        spatial_pooling: str = "avg+max",
        mlp_bias: bool = True,
        hidden_rounding: str = "floor",
        batch_norm: bool = True,
        map_order: str = "max-mean",
        fused: bool = True,
    ) -> None:
        super().__init__()
        _check_choice("arrangement", arrangement, ARRANGEMENTS)
        self.channels = channels
        self.arrangement = arrangement
        self.fused = fused
        self.channel_attention = ChannelAttention(
            channels, reduction, channel_pooling, mlp_bias, hidden_rounding
        )
        self.spatial_attention = SpatialAttention(
            kernel_size, spatial_pooling, channels, batch_norm, map_order
        )

    def _channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        ca = self.channel_attention
        return ca.gate(ca.pool(x))[:, :, None, None]

    def _spatial_weights(self, x: torch.Tensor) -> torch.Tensor:
        sa = self.spatial_attention
        return sa.gate(sa.pool(x))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        check_feature_map(x, self.channels)
        if self.fused:
            from .fused import fused_applies, fused_cbam

            if fused_applies(self, x):
                out, channel, spatial = fused_cbam(self, x)
                return self._finish(out, {"channel": channel, "spatial": spatial}, return_attention)
        if self.arrangement == "channel-spatial":
            channel = self._channel_weights(x)
            refined = x * channel
            spatial = self._spatial_weights(refined)
            out = refined * spatial
        elif self.arrangement == "spatial-channel":
            spatial = self._spatial_weights(x)
            refined = x * spatial
            channel = self._channel_weights(refined)
            out = refined * channel
        else:
            channel = self._channel_weights(x)
            spatial = self._spatial_weights(x)
            out = x * channel * spatial
        return self._finish(out, {"channel": channel, "spatial": spatial}, return_attention)


ATTENTION_NAMES = (None, "se", "cbam", "cam", "sam")


def build_attention(name: str | None, channels: int, **options) -> nn.Module | None:
    """Factory used by the models: None, "se", "cbam", "cam" (channel only), "sam" (spatial only).

    `options` go to the module's constructor (e.g. reduction=8, kernel_size=3,
    arrangement="parallel"). "cam" accepts `pooling` or `channel_pooling`, "sam" accepts
    `pooling` or `spatial_pooling`. Returns None for name=None (no attention).
    """
    _check_choice("attention", name, ATTENTION_NAMES)
    if name is None:
        if options:
            raise ValueError(f"attention=None takes no attention options, got {sorted(options)}")
        return None
    options = dict(options)
    for module_name, alias in (("cam", "channel_pooling"), ("sam", "spatial_pooling")):
        if name == module_name and alias in options:
            if "pooling" in options and options["pooling"] != options[alias]:
                raise ValueError(f"attention {name!r} was given two poolings, pooling={options['pooling']!r} and "
                                 f"{alias}={options[alias]!r}; give one of them")
            options["pooling"] = options.pop(alias)
    module_class = {"se": SEBlock, "cam": ChannelAttention, "sam": SpatialAttention, "cbam": CBAM}[name]
    accepted = [p for p in inspect.signature(module_class).parameters if p != "channels"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"attention {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(accepted)}"
        )
    return module_class(channels=channels, **options)
