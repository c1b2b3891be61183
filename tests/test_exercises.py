"""The exercise checks grade behaviour: a gallery of correct solutions written in many ways
(every one accepted) and of mistakes (every one rejected, each with the message that names it).

Solutions are written the way students write them, not the way the checks compute: Linear,
1x1 and kernel-1 convolutions, raw parameters used either way round, functional
convolutions, every spelling of padding.
"""
import functools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cbam_tutorial import CBAM, ChannelAttention, SpatialAttention
from cbam_tutorial.exercises import (
    ExerciseError, check_cbam, check_channel_attention, check_grad_cam, check_spatial_attention)
from cbam_tutorial.gradcam import grad_cam

GALLERY = {"correct": [], "wrong": []}  # (exercise, name), for the counts


def variant(cls, **options):
    return functools.partial(cls, **options)


# ================================================================== channel attention
class LinearChannelAttention(nn.Module):
    """The chapter's way, with switches for the mistakes students make."""

    def __init__(self, channels, reduction, hidden=None, squash="sigmoid", activation="relu", relu_last=False,
                 pools=("avg", "max"), axes=(2, 3), apply="multiply", separate=False, cut="", in_place=False,
                 pooling="mean"):
        super().__init__()
        hidden = hidden or channels // reduction

        def mlp():
            return nn.Sequential(nn.Linear(channels, hidden), self._activation(activation), nn.Linear(hidden, channels),
                                 *([nn.ReLU()] if relu_last else []))

        self.mlp = mlp()
        self.mlp_max = mlp() if separate else self.mlp
        self.o = dict(squash=squash, pools=pools, axes=axes, apply=apply, cut=cut, in_place=in_place, pooling=pooling)

    @staticmethod
    def _activation(name):
        return {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "gelu": nn.GELU(),
                "leaky": nn.LeakyReLU(0.01), "none": nn.Identity()}[name]

    def forward(self, x):
        o = self.o
        if o["pooling"] == "sum":
            avg = x.sum(dim=o["axes"])
        elif o["pooling"] == "fixed":
            avg = F.avg_pool2d(x, 12).flatten(1)  # a window that fits one input size only
        else:
            avg = x.mean(dim=o["axes"])
        mx = x.flatten(2).argmax(-1).float() if o["pooling"] == "argmax" else x.amax(dim=o["axes"])
        first, second = {"avg": avg, "max": mx}[o["pools"][0]], {"avg": avg, "max": mx}[o["pools"][-1]]
        a, m = self.mlp(first), self.mlp_max(second)
        if len(o["pools"]) == 1:
            m = torch.zeros_like(a)
        squash = {"sigmoid": torch.sigmoid, "none": lambda t: t, "tanh": torch.tanh,
                  "softmax": lambda t: torch.softmax(t, 1), "hard": F.hardsigmoid}[o["squash"]]
        gate = squash(a) + squash(m) if o["squash"] == "each" else squash(a + m)
        if o["cut"] == "detach":
            gate = gate.detach()
        gate = gate[:, :, None, None]
        if o["apply"] == "gate":
            return gate
        if o["apply"] == "one plus":
            return x * (1 + gate)
        if o["apply"] == "twice":
            return x * x * gate
        if o["apply"] == "residual":
            return x + x * gate
        return x.mul_(gate) if o["in_place"] else x * gate


class NoGradChannelAttention(LinearChannelAttention):
    def forward(self, x):
        with torch.no_grad():
            gate = torch.sigmoid(self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3))))
        return x * gate[:, :, None, None]


class SigmoidEachChannelAttention(LinearChannelAttention):
    def forward(self, x):
        gate = torch.sigmoid(self.mlp(x.mean(dim=(2, 3)))) + torch.sigmoid(self.mlp(x.amax(dim=(2, 3))))
        return x * gate[:, :, None, None]


class ConvChannelAttention(nn.Module):
    """Correct: 1x1 convolutions without biases on (B, C, 1, 1) descriptors, adaptive pooling."""

    def __init__(self, channels, reduction):
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x):
        return x * torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))


class MatrixChannelAttention(nn.Module):
    """Correct: raw (in, out) matrices used as v @ W, with biases."""

    def __init__(self, channels, reduction):
        super().__init__()
        hidden = channels // reduction
        self.w1 = nn.Parameter(torch.randn(channels, hidden) * 0.1)
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2 = nn.Parameter(torch.randn(hidden, channels) * 0.1)
        self.b2 = nn.Parameter(torch.zeros(channels))

    def mlp(self, v):
        return torch.relu(v @ self.w1 + self.b1) @ self.w2 + self.b2

    def forward(self, x):
        b, c, _, _ = x.shape
        return x * torch.sigmoid(self.mlp(x.view(b, c, -1).mean(-1)) + self.mlp(x.view(b, c, -1).max(-1).values)).view(b, c, 1, 1)


class Conv1dChannelAttention(nn.Module):
    """Correct: the shared MLP as kernel-1 Conv1d layers over the two stacked descriptors."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(channels, channels // reduction, 1), nn.ReLU(),
                                 nn.Conv1d(channels // reduction, channels, 1))

    def forward(self, x):
        descriptors = torch.stack([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=2)  # (B, C, 2)
        return x * torch.sigmoid(self.mlp(descriptors).sum(dim=2))[:, :, None, None]


class EinsumChannelAttention(nn.Module):
    """Correct: (out, in) weights without biases through einsum, pooled with torch.max(...).values."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.down = nn.Parameter(torch.randn(channels // reduction, channels))
        self.up = nn.Parameter(torch.randn(channels, channels // reduction))

    def forward(self, x):
        def mlp(v):
            return torch.einsum("oh,bh->bo", self.up, F.relu(torch.einsum("hc,bc->bh", self.down, v)))
        mx = torch.max(torch.max(x, dim=3).values, dim=2).values
        return x * torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(mx)).unsqueeze(-1).unsqueeze(-1)


class FunctionalChannelAttention(nn.Module):
    """Correct: F.linear on parameters the student made, biases on, ordered max then avg."""

    def __init__(self, channels, reduction):
        super().__init__()
        hidden = channels // reduction
        self.weight1, self.bias1 = nn.Parameter(torch.randn(hidden, channels)), nn.Parameter(torch.randn(hidden))
        self.weight2, self.bias2 = nn.Parameter(torch.randn(channels, hidden)), nn.Parameter(torch.randn(channels))

    def forward(self, x):
        def mlp(v):
            return F.linear(F.relu(F.linear(v, self.weight1, self.bias1)), self.weight2, self.bias2)
        return x * torch.sigmoid(mlp(x.amax(dim=(2, 3))) + mlp(x.mean(dim=(2, 3)))).view(*x.shape[:2], 1, 1)


CHANNEL_CORRECT = [ChannelAttention, variant(ChannelAttention, mlp_bias=False), LinearChannelAttention,
                   ConvChannelAttention, MatrixChannelAttention, Conv1dChannelAttention, EinsumChannelAttention,
                   FunctionalChannelAttention]
GALLERY["correct"] += [("channel", getattr(s, "__name__", repr(s))) for s in CHANNEL_CORRECT]


@pytest.mark.parametrize("solution", CHANNEL_CORRECT)
def test_channel_check_accepts_correct_solutions(solution):
    assert check_channel_attention(solution).startswith("Correct")


class HardCodedReduction(LinearChannelAttention):
    def __init__(self, channels, reduction):
        super().__init__(channels, 16 if channels >= 16 else reduction)


class HardCodedChannels(LinearChannelAttention):
    def __init__(self, channels, reduction):
        super().__init__(12, reduction)


CHANNEL_WRONG = [
    (dict(separate=True), "ONE shared MLP"),
    (dict(squash="none"), "not squashed"),
    (dict(squash="tanh"), "squashed with tanh"),
    (dict(squash="softmax"), "softmax over the channels"),
    (dict(squash="hard"), "hardsigmoid"),
    (dict(relu_last=True), "ReLU after the last MLP layer"),
    (dict(axes=(1, 2)), "wrong axes"),
    (dict(apply="gate"), "returns the attention weights"),
    (dict(in_place=True), "in place"),
    (dict(pools=("avg",)), "max-pooled descriptor too"),
    (dict(pools=("max",)), "average-pooled descriptor too"),
    (dict(pools=("avg", "avg")), "goes through the MLP twice \\(MLP\\(avg\\) \\+ MLP\\(avg\\)\\)"),
    (dict(pooling="sum"), "sum over the positions"),
    (dict(pooling="argmax"), "argmax indices"),
    (dict(pooling="fixed"), "ran on an input of shape .* but not on .*fixed size"),
    (dict(activation="sigmoid"), "hidden activation is a sigmoid"),
    (dict(activation="gelu"), "hidden activation is GELU"),
    (dict(activation="none"), "no activation between its layers"),
    (dict(apply="one plus"), "returns x \\* \\(1 \\+ weights\\)"),
    (dict(apply="twice"), "multiplied in twice"),
    (dict(apply="residual"), "the same as x \\+ x \\* weights"),
    (dict(cut="detach"), "never receive a gradient"),
]
CHANNEL_WRONG_CLASSES = [
    (NoGradChannelAttention, "never receive a gradient.*no_grad"),
    (SigmoidEachChannelAttention, "sigmoid is in the wrong place"),
    (HardCodedReduction, "reduction argument is ignored"),
    (HardCodedChannels, "channels argument\\s+ignored|hard-coded"),
]
GALLERY["wrong"] += [("channel", str(m)) for m, _ in CHANNEL_WRONG + CHANNEL_WRONG_CLASSES]


@pytest.mark.parametrize("mistake, message", CHANNEL_WRONG, ids=[str(m) for m, _ in CHANNEL_WRONG])
def test_channel_check_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_channel_attention(variant(LinearChannelAttention, **mistake))


@pytest.mark.parametrize("solution, message", CHANNEL_WRONG_CLASSES, ids=[c.__name__ for c, _ in CHANNEL_WRONG_CLASSES])
def test_channel_check_names_structural_mistakes(solution, message):
    with pytest.raises(ExerciseError, match=message):
        check_channel_attention(solution)


# ================================================================== spatial attention
class StudentSpatialAttention(nn.Module):
    """Correct ([mean; max], conv with bias, no BatchNorm) unless told otherwise."""

    def __init__(self, kernel_size, padding=None, squash="sigmoid", maps=("mean", "max"), apply="multiply",
                 in_place=False, tuple_max=False, axis=1, cut="", fixed_kernel=None):
        super().__init__()
        k = fixed_kernel or kernel_size
        self.conv = nn.Conv2d(len(maps), 1, k, padding=k // 2 if padding is None else padding)
        self.o = dict(squash=squash, maps=maps, apply=apply, in_place=in_place, tuple_max=tuple_max, axis=axis, cut=cut)

    def forward(self, x):
        o = self.o
        pools = {"mean": lambda: x.mean(dim=o["axis"], keepdim=True),
                 "sum": lambda: x.sum(dim=o["axis"], keepdim=True),
                 "max": lambda: (torch.max(x, dim=o["axis"], keepdim=True) if o["tuple_max"]
                                 else torch.max(x, dim=o["axis"], keepdim=True).values),
                 "argmax": lambda: x.argmax(dim=o["axis"], keepdim=True).float(),
                 "min": lambda: x.amin(dim=o["axis"], keepdim=True)}
        gate = self.conv(torch.cat([pools[name]() for name in o["maps"]], dim=1))
        gate = {"sigmoid": torch.sigmoid, "none": lambda t: t, "tanh": torch.tanh,
                "softmax": lambda t: torch.softmax(t.flatten(1), 1).view_as(t)}[o["squash"]](gate)
        if o["cut"] == "detach":
            gate = gate.detach()
        if o["apply"] == "gate":
            return gate
        if o["apply"] == "one plus":
            return x * (1 + gate)
        if o["apply"] == "residual":
            return x + x * gate
        return x.mul_(gate) if o["in_place"] else x * gate


class SamePaddingSpatialAttention(nn.Module):
    """Correct: padding='same', [max; mean] order, BatchNorm after the convolution."""

    def __init__(self, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding="same", bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        maps = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(maps)))


class FunctionalSpatialAttention(nn.Module):
    """Correct: F.conv2d with its own weight and bias parameters, padding as a tuple."""

    def __init__(self, kernel_size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, 2, kernel_size, kernel_size) * 0.1)
        self.bias = nn.Parameter(torch.zeros(1))
        self.padding = (kernel_size // 2, kernel_size // 2)

    def forward(self, x):
        maps = torch.stack([x.mean(1), x.amax(1)], dim=1)
        return x * F.conv2d(maps, self.weight, self.bias, padding=self.padding).sigmoid()


class PaddedSpatialAttention(nn.Module):
    """Correct: padding done by F.pad, a convolution without padding."""

    def __init__(self, kernel_size):
        super().__init__()
        self.k = kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size)

    def forward(self, x):
        maps = F.pad(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1), [self.k // 2] * 4)
        return torch.sigmoid(self.conv(maps)) * x


SPATIAL_CORRECT = [SpatialAttention, variant(SpatialAttention, batch_norm=False, map_order="mean-max"),
                   StudentSpatialAttention, SamePaddingSpatialAttention, FunctionalSpatialAttention,
                   PaddedSpatialAttention]
GALLERY["correct"] += [("spatial", getattr(s, "__name__", repr(s))) for s in SPATIAL_CORRECT]


@pytest.mark.parametrize("solution", SPATIAL_CORRECT)
def test_spatial_check_accepts_correct_solutions(solution):
    assert check_spatial_attention(solution).startswith("Correct")


SPATIAL_WRONG = [
    (dict(padding=0), "turns \\(9, 9\\) maps into \\(3, 3\\).*pad the convolution by kernel_size // 2"),
    (dict(padding=3), "3x3 convolution turns .*pad the convolution by kernel_size // 2"),  # right for k = 7 only
    (dict(fixed_kernel=7), "kernel_size argument is ignored"),
    (dict(squash="none"), "not squashed"),
    (dict(squash="tanh"), "squashed with tanh"),
    (dict(squash="softmax"), "softmax over the positions"),
    (dict(maps=("mean", "mean")), "mean map is used twice"),
    (dict(maps=("max", "max")), "max map is used twice"),
    (dict(maps=("sum", "max")), "sum over the channels"),
    (dict(maps=("mean", "argmax")), "channel indices of the maxima"),
    (dict(maps=("mean", "min")), "minimum over the channels"),
    (dict(maps=("mean",)), "reads 1 map"),
    (dict(tuple_max=True), "values, indices"),
    (dict(apply="gate"), "returns the attention weights"),
    (dict(apply="one plus"), "returns x \\* \\(1 \\+ weights\\)"),
    (dict(apply="residual"), "the same as x \\+ x \\* weights"),
    (dict(in_place=True), "in place"),
    (dict(cut="detach"), "never receive a gradient"),
]
GALLERY["wrong"] += [("spatial", str(m)) for m, _ in SPATIAL_WRONG]


@pytest.mark.parametrize("mistake, message", SPATIAL_WRONG, ids=[str(m) for m, _ in SPATIAL_WRONG])
def test_spatial_check_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_spatial_attention(variant(StudentSpatialAttention, **mistake))


# ================================================================== CBAM arrangements
class StudentCBAM(nn.Module):
    def __init__(self, channels, reduction, kernel_size, order="channel-spatial", cut=""):
        super().__init__()
        self.channel = LinearChannelAttention(channels, reduction)
        self.spatial = FunctionalSpatialAttention(kernel_size)
        self.order, self.cut = order, cut

    def spatial_gate(self, x):
        maps = torch.stack([x.mean(1), x.amax(1)], dim=1)
        return F.conv2d(maps, self.spatial.weight, self.spatial.bias, padding=self.spatial.padding).sigmoid()

    def forward(self, x):
        if self.order == "channel-spatial":
            return self.spatial(self.channel(x))
        if self.order == "spatial-channel":
            return self.channel(self.spatial(x))
        channel_gate = self.channel(x) / x  # M_c(x) broadcast, recovered from the refined features
        gate = self.spatial_gate(x)
        if self.cut == "detach":
            gate = gate.detach()
        if self.order == "parallel":
            return self.channel(x) * gate
        if self.order == "sum":
            return x * (channel_gate + gate)
        if self.order == "residual":
            return x + self.spatial(self.channel(x))
        return self.channel(x)  # "channel only"


CBAM_CORRECT = [(variant(StudentCBAM, order=a), a) for a in ("channel-spatial", "spatial-channel", "parallel")] + \
               [(variant(CBAM, arrangement=a), a) for a in ("channel-spatial", "spatial-channel", "parallel")]
GALLERY["correct"] += [("cbam", a) for _, a in CBAM_CORRECT]


@pytest.mark.parametrize("solution, arrangement", CBAM_CORRECT)
def test_cbam_check_accepts_each_arrangement(solution, arrangement):
    assert check_cbam(solution, arrangement=arrangement).startswith("Correct")


CBAM_WRONG = [
    (dict(order="spatial-channel"), "channel-spatial", "implements the spatial-channel arrangement"),
    (dict(order="channel-spatial"), "parallel", "implements the channel-spatial arrangement"),
    (dict(order="channel only"), "channel-spatial", "channel attention only"),
    (dict(order="sum"), "parallel", "gates are added"),
    (dict(order="residual"), "channel-spatial", "the same as x \\+ x \\* weights"),
    (dict(order="parallel", cut="detach"), "parallel", "never receive a gradient"),
]
GALLERY["wrong"] += [("cbam", str(m)) for m, _, _ in CBAM_WRONG]


@pytest.mark.parametrize("mistake, arrangement, message", CBAM_WRONG, ids=[str(m) for m, _, _ in CBAM_WRONG])
def test_cbam_check_names_each_mistake(mistake, arrangement, message):
    with pytest.raises(ExerciseError, match=message):
        check_cbam(variant(StudentCBAM, **mistake), arrangement=arrangement)
    with pytest.raises(ValueError, match="unknown arrangement"):
        check_cbam(StudentCBAM, arrangement="sideways")


# ================================================================== Grad-CAM
def student_grad_cam(model, images, targets, layer, relu="sum", upsample="bilinear", weights="mean",
                     scale="image", score="logit", use_targets=True, remove_hooks=True, mode="eval",
                     batch_mean=False, scale_first=False):
    """Correct unless told otherwise; written with a backward hook instead of autograd.grad."""
    stored = {}
    forward = layer.register_forward_hook(lambda m, i, out: stored.__setitem__("a", out))
    backward = layer.register_full_backward_hook(lambda m, gi, go: stored.__setitem__("g", go[0]))
    try:
        if mode == "train":
            model.train()
        model.zero_grad()
        logits = model(images)
        chosen = targets if use_targets else logits.argmax(1)
        if score == "probability":
            value = torch.softmax(logits, 1)[torch.arange(len(chosen)), chosen].sum()
        elif score == "loss":
            value = F.cross_entropy(logits, chosen, reduction="sum")
        else:
            value = logits[torch.arange(len(chosen)), chosen].sum()
        value.backward()
    finally:
        if remove_hooks:
            forward.remove()
            backward.remove()
    a, g = stored["a"].detach(), stored["g"]
    if weights == "abs":
        g = g.abs()
    elif weights == "relu":
        g = F.relu(g)
    if weights == "none":
        cam = a.sum(1, keepdim=True)
    elif weights == "position":
        cam = (g * a).sum(1, keepdim=True)
    else:
        alpha = g.mean(dim=(0, 2, 3), keepdim=True) if batch_mean else g.mean(dim=(2, 3), keepdim=True)
        cam = (alpha * a).sum(1, keepdim=True)
    cam = F.relu(cam) if relu == "sum" else cam

    def to_unit(maps):
        low = maps.amin(dim=(-2, -1), keepdim=True) if scale == "image" else maps.min()
        high = maps.amax(dim=(-2, -1), keepdim=True) if scale == "image" else maps.max()
        return (maps - low) / (high - low)

    if scale_first:
        cam = to_unit(cam)
    if upsample:
        kwargs = {} if upsample == "nearest" else {"align_corners": False}
        cam = F.interpolate(cam, size=images.shape[-2:], mode=upsample, **kwargs)
    if relu == "after":
        cam = F.relu(cam)
    cam = cam[:, 0]
    return cam if scale_first else to_unit(cam)


def package_grad_cam(model, images, targets, layer):
    name = next(n for n, m in model.named_modules() if m is layer)
    return grad_cam(model, images, target=targets, layer=name).maps


def autograd_grad_cam(model, images, targets, layer):
    """Correct: autograd.grad on a stored activation, mode saved and restored, hook removed."""
    was_training = model.training
    model.eval()
    saved = []
    handle = layer.register_forward_hook(lambda m, i, o: saved.append(o))
    try:
        logits = model(images)
        (gradient,) = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), saved[0])
    finally:
        handle.remove()
        model.train(was_training)
    cam = torch.relu(torch.einsum("bchw,bc->bhw", saved[0].detach(), gradient.mean(dim=(2, 3))))
    cam = F.interpolate(cam[:, None], images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    flat = cam.flatten(1)
    return ((flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values -
                                                          flat.min(1, keepdim=True).values)).view_as(cam)


GRAD_CAM_CORRECT = [package_grad_cam, student_grad_cam, autograd_grad_cam]
GALLERY["correct"] += [("grad-cam", s.__name__) for s in GRAD_CAM_CORRECT]


@pytest.mark.parametrize("solution", GRAD_CAM_CORRECT)
def test_grad_cam_check_accepts_correct_solutions(solution):
    assert check_grad_cam(solution).startswith("Correct")


GRAD_CAM_WRONG = [
    (dict(relu="none"), "ReLU is missing"),
    (dict(relu="after"), "ReLU comes after the upsampling"),
    (dict(upsample=None), "upsample them"),
    (dict(upsample="nearest"), "nearest-neighbour"),
    (dict(upsample="bicubic"), "bicubically"),
    (dict(scale="batch"), "per image"),
    (dict(weights="position"), "MEAN of its gradient"),
    (dict(weights="abs"), "ABSOLUTE gradients"),
    (dict(weights="relu"), "ReLU is applied to the gradients"),
    (dict(weights="none"), "summed without weights"),
    (dict(score="probability"), "softmax probability"),
    (dict(score="loss"), "gradients are of the loss"),
    (dict(use_targets=False), "explain the predicted class"),
    (dict(batch_mean=True), "averaged over the batch"),
    (dict(scale_first=True), "scaled to \\[0, 1\\] before upsampling"),
    (dict(remove_hooks=False), "leaves hooks on the model"),
    (dict(mode="train"), "training mode"),
]


def input_gradient_saliency(model, images, targets, layer):
    images = images.clone().requires_grad_(True)
    model(images).gather(1, targets[:, None]).sum().backward()
    saliency = images.grad.abs().amax(dim=1)
    low, high = saliency.amin(dim=(1, 2), keepdim=True), saliency.amax(dim=(1, 2), keepdim=True)
    return (saliency - low) / (high - low)


def leaves_model_in_train_mode(model, images, targets, layer):
    maps = package_grad_cam(model, images, targets, layer)
    model.train()
    return maps


GRAD_CAM_WRONG_FUNCTIONS = [(input_gradient_saliency, "gradients with respect to the input image"),
                            (leaves_model_in_train_mode, "leaves the model in another mode")]
GALLERY["wrong"] += [("grad-cam", str(m)) for m, _ in GRAD_CAM_WRONG + GRAD_CAM_WRONG_FUNCTIONS]


@pytest.mark.parametrize("mistake, message", GRAD_CAM_WRONG, ids=[str(m) for m, _ in GRAD_CAM_WRONG])
def test_grad_cam_check_names_each_mistake(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_grad_cam(functools.partial(student_grad_cam, **mistake))


@pytest.mark.parametrize("solution, message", GRAD_CAM_WRONG_FUNCTIONS, ids=[f.__name__ for f, _ in GRAD_CAM_WRONG_FUNCTIONS])
def test_grad_cam_check_names_written_out_mistakes(solution, message):
    with pytest.raises(ExerciseError, match=message):
        check_grad_cam(solution)


# ================================================================== running the student's code
def test_unbuildable_and_non_module_solutions():
    with pytest.raises(ExerciseError, match="could not be built"):
        check_channel_attention(lambda channels: None)
    with pytest.raises(ExerciseError, match="nn.Module subclass"):
        check_channel_attention(lambda channels, reduction: "not a module")


class CrashesInForward(ConvChannelAttention):
    def forward(self, x):
        pooled = x.mean(dim=(2, 3))
        return x * self.mlp(pooled.view(len(x), -1, 2))  # a wrong reshape


def test_an_exception_names_the_students_line_that_raised_it():
    with pytest.raises(ExerciseError, match=r"forward raised RuntimeError: .*\(in `return x \* self.mlp\(pooled.view"
                                            r"\(len\(x\), -1, 2\)\)"):
        check_channel_attention(CrashesInForward)


def test_the_gallery_is_large_and_every_wrong_solution_gets_a_specific_message():
    """Counts for the record: the parametrised tests above assert each message."""
    correct, wrong = len(GALLERY["correct"]), len(GALLERY["wrong"])
    print(f"\nexercise gallery: {correct} correct solutions, {wrong} mistakes, each with its own message")
    assert correct >= 20 and wrong >= 40
