"""The package's modules against timm's CBAM layers, with the same weights.

timm implements one variant: no MLP biases, maps ordered [mean, max], hidden width
round(C / r), BatchNorm after the spatial convolution. The package's modules are built
with those choices; forward values and gradients (of the input and of every weight) must
agree to float tolerance, in training and in eval mode, on the plain and the fused path.
"""
import copy

import pytest
import torch

timm_cbam = pytest.importorskip("timm.layers.cbam")

from cbam_tutorial import CBAM, ChannelAttention, SpatialAttention  # noqa: E402

TIMM_VARIANT = dict(mlp_bias=False, hidden_rounding="nearest")


def copy_channel_weights(ours: ChannelAttention, theirs) -> None:
    with torch.no_grad():
        theirs.fc1.weight.copy_(ours.mlp[0].weight[:, :, None, None])
        theirs.fc2.weight.copy_(ours.mlp[2].weight[:, :, None, None])


def copy_spatial_weights(ours: SpatialAttention, theirs) -> None:
    with torch.no_grad():
        theirs.conv.conv.weight.copy_(ours.conv.weight)
        theirs.conv.bn.weight.copy_(ours.norm.weight)
        theirs.conv.bn.bias.copy_(ours.norm.bias)


def randomize(module: torch.nn.Module) -> None:
    """Random weights everywhere (BatchNorm affine too), so that no term hides."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def assert_same_function(ours, theirs, x, train: bool) -> None:
    ours.train(train)
    theirs.train(train)
    x1 = x.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    out1, out2 = ours(x1), theirs(x2)
    torch.testing.assert_close(out1, out2, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out1)
    out1.backward(grad)
    out2.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)
    ours_grads = sorted(p.grad.flatten().abs().sum().item() for p in ours.parameters())
    theirs_grads = sorted(p.grad.flatten().abs().sum().item() for p in theirs.parameters())
    assert ours_grads == pytest.approx(theirs_grads, rel=1e-4)


@pytest.mark.parametrize("channels", [64, 40])
@pytest.mark.parametrize("train", [True, False])
def test_channel_attention_matches_timm(channels, train):
    ours = ChannelAttention(channels, reduction=16, **TIMM_VARIANT)
    theirs = timm_cbam.ChannelAttn(channels, rd_ratio=1 / 16)
    assert theirs.fc1.out_channels == ours.mlp[0].out_features
    randomize(ours)
    copy_channel_weights(ours, theirs)
    assert_same_function(ours, theirs, torch.randn(4, channels, 9, 7), train)


@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("train", [True, False])
def test_spatial_attention_matches_timm(kernel_size, train):
    ours = SpatialAttention(kernel_size, map_order="mean-max")
    theirs = timm_cbam.SpatialAttn(kernel_size)
    randomize(ours)
    copy_spatial_weights(ours, theirs)
    assert_same_function(ours, theirs, torch.randn(4, 8, 10, 12), train)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last],
                         ids=["plain-path", "fused-path"])
@pytest.mark.parametrize("train", [True, False])
def test_cbam_matches_timm(memory_format, train):
    ours = CBAM(64, reduction=16, kernel_size=7, map_order="mean-max", **TIMM_VARIANT)
    theirs = timm_cbam.CbamModule(64, rd_ratio=1 / 16, spatial_kernel_size=7)
    randomize(ours)
    copy_channel_weights(ours.channel_attention, theirs.channel)
    copy_spatial_weights(ours.spatial_attention, theirs.spatial)
    x = torch.randn(4, 64, 12, 12).to(memory_format=memory_format)
    assert_same_function(ours, copy.deepcopy(theirs), x, train)
