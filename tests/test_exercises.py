"""The exercise checks: they pass correct solutions written in different ways and reject a
gallery of typical mistakes, each with its own message."""
import functools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cbam_tutorial import CBAM, ChannelAttention, SpatialAttention
from cbam_tutorial.exercises import (
    ExerciseError, check_cbam, check_channel_attention, check_grad_cam, check_spatial_attention)
from cbam_tutorial.gradcam import grad_cam


# ------------------------------------------------------------------ channel attention
class ConvChannelAttention(nn.Module):
    """Correct, written differently: 1x1 convolutions without biases, adaptive pooling."""

    def __init__(self, channels, reduction, separate=False, sigmoid="sum", relu_last=False,
                 axes=(2, 3), multiply=True, in_place=False, pools=("avg", "max")):
        super().__init__()
        hidden = channels // reduction

        def mlp():
            layers = [nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False)]
            return nn.Sequential(*layers, nn.ReLU()) if relu_last else nn.Sequential(*layers)

        self.mlp = mlp()
        self.mlp_max = mlp() if separate else self.mlp
        self.options = dict(sigmoid=sigmoid, axes=axes, multiply=multiply, in_place=in_place, pools=pools)

    def forward(self, x):
        o = self.options
        avg = x.mean(dim=o["axes"], keepdim=True)
        mx = x.amax(dim=o["axes"], keepdim=True)
        if o["axes"] != (2, 3):  # wrong axes: reshape the (B, 1, 1, C) result as a student would
            avg, mx = avg.reshape(len(x), -1, 1, 1), mx.reshape(len(x), -1, 1, 1)
        a = self.mlp(avg) if "avg" in o["pools"] else 0
        m = self.mlp_max(mx) if "max" in o["pools"] else 0
        if o["sigmoid"] == "sum":
            weights = torch.sigmoid(a + m)
        elif o["sigmoid"] == "each":
            weights = torch.sigmoid(a) + torch.sigmoid(m)
        else:
            weights = a + m
        if not o["multiply"]:
            return weights
        if o["in_place"]:
            return x.mul_(weights)
        return x * weights


class LinearChannelAttention(nn.Module):
    """Correct, the chapter's way: nn.Linear with biases on flattened descriptors."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels))

    def forward(self, x):
        gate = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1).flatten(1)) +
                             self.mlp(F.adaptive_max_pool2d(x, 1).flatten(1)))
        return x * gate.view(*gate.shape, 1, 1)


def variant(cls, **options):
    return functools.partial(cls, **options)


@pytest.mark.parametrize("solution", [ChannelAttention, LinearChannelAttention, ConvChannelAttention])
def test_channel_check_accepts_correct_solutions(solution):
    assert check_channel_attention(solution).startswith("Correct")


@pytest.mark.parametrize("mistake, message", [
    (dict(separate=True), "ONE shared MLP"),
    (dict(sigmoid="none"), "not squashed"),
    (dict(sigmoid="each"), "sigmoid is in the wrong place"),
    (dict(relu_last=True), "ReLU after the last MLP layer"),
    (dict(axes=(1, 2)), "wrong axes"),
    (dict(multiply=False), "returns the attention weights"),
    (dict(in_place=True), "in place"),
    (dict(pools=("avg",)), "max-pooled descriptor too"),
])
def test_channel_check_rejects_mistakes(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_channel_attention(variant(ConvChannelAttention, **mistake))


# ------------------------------------------------------------------ spatial attention
class StudentSpatialAttention(nn.Module):
    """Correct (paper's [mean; max] order, conv with bias, no BatchNorm) unless told otherwise."""

    def __init__(self, kernel_size, padding=None, sigmoid=True, axis=1, multiply=True, in_place=False,
                 tuple_max=False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2 if padding is None else padding)
        self.options = dict(sigmoid=sigmoid, axis=axis, multiply=multiply, in_place=in_place, tuple_max=tuple_max)

    def forward(self, x):
        o = self.options
        mx = torch.max(x, dim=o["axis"], keepdim=True) if o["tuple_max"] else torch.max(x, dim=o["axis"], keepdim=True).values
        maps = torch.cat([x.mean(dim=o["axis"], keepdim=True), mx], dim=1)
        weights = self.conv(maps)
        weights = torch.sigmoid(weights) if o["sigmoid"] else weights
        if not o["multiply"]:
            return weights
        return x.mul_(weights) if o["in_place"] else x * weights


@pytest.mark.parametrize("solution", [SpatialAttention, StudentSpatialAttention,
                                      variant(SpatialAttention, batch_norm=False, map_order="mean-max")])
def test_spatial_check_accepts_correct_solutions(solution):
    assert check_spatial_attention(solution).startswith("Correct")
    assert check_spatial_attention(solution, kernel_size=3).startswith("Correct")


@pytest.mark.parametrize("mistake, message", [
    (dict(padding=0), "padding=kernel_size // 2 = 3"),
    (dict(padding=1), "padding"),
    (dict(sigmoid=False), "not squashed"),
    (dict(axis=0), "channel axis"),
    (dict(multiply=False), "returns the attention weights"),
    (dict(in_place=True), "in place"),
    (dict(tuple_max=True), "values, indices"),
])
def test_spatial_check_rejects_mistakes(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_spatial_attention(variant(StudentSpatialAttention, **mistake))


# ------------------------------------------------------------------ CBAM arrangements
class StudentCBAM(nn.Module):
    def __init__(self, channels, reduction, kernel_size, order="channel-spatial"):
        super().__init__()
        self.channel = LinearChannelAttention(channels, reduction)
        self.spatial = StudentSpatialAttention(kernel_size)
        self.order = order

    def forward(self, x):
        if self.order == "channel-spatial":
            return self.spatial(self.channel(x))
        if self.order == "spatial-channel":
            return self.channel(self.spatial(x))
        if self.order == "parallel":
            return self.channel(x) * torch.sigmoid(self.spatial.conv(torch.cat(
                [x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return self.channel(x)  # "channel only"


@pytest.mark.parametrize("arrangement", ["channel-spatial", "spatial-channel", "parallel"])
def test_cbam_check_accepts_each_arrangement(arrangement):
    assert check_cbam(variant(StudentCBAM, order=arrangement), arrangement=arrangement).startswith("Correct")
    assert check_cbam(variant(CBAM, arrangement=arrangement), arrangement=arrangement).startswith("Correct")


def test_cbam_check_names_the_arrangement_built():
    with pytest.raises(ExerciseError, match="implements the spatial-channel arrangement"):
        check_cbam(variant(StudentCBAM, order="spatial-channel"))
    with pytest.raises(ExerciseError, match="channel attention only"):
        check_cbam(variant(StudentCBAM, order="channel only"))
    with pytest.raises(ValueError, match="unknown arrangement"):
        check_cbam(StudentCBAM, arrangement="sideways")


# ------------------------------------------------------------------ Grad-CAM
def student_grad_cam(model, images, targets, layer, relu=True, upsample=True, mean_gradient=True,
                     per_image=True):
    """Correct unless told otherwise; written with a backward hook instead of autograd.grad."""
    stored = {}
    forward = layer.register_forward_hook(lambda m, i, out: stored.__setitem__("a", out))
    backward = layer.register_full_backward_hook(lambda m, gi, go: stored.__setitem__("g", go[0]))
    try:
        model.zero_grad()
        logits = model(images)
        logits[torch.arange(len(targets)), targets].sum().backward()
    finally:
        forward.remove()
        backward.remove()
    a, g = stored["a"].detach(), stored["g"]
    weights = g.mean(dim=(2, 3), keepdim=True) if mean_gradient else g
    cam = (weights * a).sum(1, keepdim=True)
    cam = F.relu(cam) if relu else cam
    if upsample:
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    if per_image:
        low, high = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
    else:
        low, high = cam.min(), cam.max()
    return (cam - low) / (high - low)


def package_grad_cam(model, images, targets, layer):
    name = next(n for n, m in model.named_modules() if m is layer)
    return grad_cam(model, images, target=targets, layer=name).maps


@pytest.mark.parametrize("solution", [package_grad_cam, student_grad_cam])
def test_grad_cam_check_accepts_correct_solutions(solution):
    assert check_grad_cam(solution).startswith("Correct")


@pytest.mark.parametrize("mistake, message", [
    (dict(relu=False), "ReLU is missing"),
    (dict(upsample=False), "upsample"),
    (dict(per_image=False), "per image"),
    (dict(mean_gradient=False), "MEAN of its gradient"),
])
def test_grad_cam_check_rejects_mistakes(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_grad_cam(functools.partial(student_grad_cam, **mistake))


def test_unbuildable_and_non_module_solutions():
    with pytest.raises(ExerciseError, match="could not be built"):
        check_channel_attention(lambda channels: None)
    with pytest.raises(ExerciseError, match="nn.Module subclass"):
        check_channel_attention(lambda channels, reduction: "not a module")
