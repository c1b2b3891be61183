"""Automatic checks for the book's implementation exercises.

    check_channel_attention(MyChannelAttention)    # built as MyChannelAttention(channels, reduction)
    check_spatial_attention(MySpatialAttention)    # built as MySpatialAttention(kernel_size)
    check_cbam(MyCBAM)                             # built as MyCBAM(channels, reduction, kernel_size)
    check_grad_cam(my_grad_cam)                    # called as my_grad_cam(model, images, targets, layer)

Each check builds the student's module with random weights, reads those weights (whatever
the student called them), computes what the paper's formula gives with the same weights
on random inputs, and compares. A correct solution passes however it is written; a wrong
one raises ExerciseError whose message names the mistake when it is a known one (separate
MLPs, a missing or misplaced sigmoid, pooling over the wrong axis, the gate not applied to
the input, a wrong padding, a ReLU after the last MLP layer, changing the input in place,
the wrong arrangement).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ExerciseError(AssertionError):
    """The solution does not do what the exercise asks; the message says what is wrong."""


def _fail(message: str):
    raise ExerciseError(message)


def _close(a, b) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def _randomise(module: nn.Module, seed: int) -> None:
    """New random weights (so that zeros or ones from an initialiser cannot hide a mistake)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def _build(student_class, *args, what: str) -> nn.Module:
    try:
        module = student_class(*args)
    except Exception as error:  # the student's constructor: report whatever went wrong
        _fail(f"{what}{args} could not be built: {type(error).__name__}: {error}")
    if not isinstance(module, nn.Module):
        _fail(f"{what} must be an nn.Module subclass (class {what}(nn.Module): ...)")
    return module.eval()


def _run(module: nn.Module, x: torch.Tensor, hint: str) -> torch.Tensor:
    """The student's forward on a copy of x, checking that x itself is left alone."""
    original = x.clone()
    try:
        out = module(x)
    except TypeError as error:
        extra = (" (torch.max(x, dim=...) returns (values, indices): use .values, or x.amax(dim=...))"
                 if "tuple" in str(error) or "max" in str(error) else "")
        _fail(f"forward raised TypeError: {error}{extra}. {hint}")
    except Exception as error:
        _fail(f"forward raised {type(error).__name__}: {error}. {hint}")
    if not torch.equal(x, original):
        _fail("forward changed its input in place (e.g. x *= w or x.mul_(w)); the block's input is "
              "still needed by the residual shortcut and by autograd: return x * w instead")
    if isinstance(out, tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        _fail(f"forward must return a tensor, got {type(out).__name__}")
    return out


def _matrices(module: nn.Module, rows: int, columns: int) -> list[torch.Tensor]:
    """Parameters that are (rows, columns) matrices, also stored as 1x1 convolutions."""
    found = []
    for parameter in module.parameters():
        p = parameter.detach()
        if p.dim() == 4 and p.shape[2:] == (1, 1):
            p = p[:, :, 0, 0]
        if p.dim() == 2 and tuple(p.shape) == (rows, columns):
            found.append(p)
    return found


def _vectors(module: nn.Module, length: int, exclude=()) -> list[torch.Tensor]:
    skip = {id(p) for m in module.modules() if isinstance(m, exclude) for p in m.parameters()}
    return [p.detach() for p in module.parameters() if p.dim() == 1 and len(p) == length and id(p) not in skip]


# ----------------------------------------------------------------------------- channel


def _channel_weights(module: nn.Module, channels: int, hidden: int):
    first = _matrices(module, hidden, channels)
    second = _matrices(module, channels, hidden)
    if len(first) >= 2 or len(second) >= 2:
        _fail("found two MLPs (two sets of weights of the same shape): CBAM's channel attention sends "
              "the average- and the max-pooled descriptor through ONE shared MLP; build the MLP once "
              "and call it on both")
    if not first or not second:
        _fail(f"expected a shared MLP {channels} -> {hidden} -> {channels} (hidden = channels // "
              f"reduction), as nn.Linear or 1x1 nn.Conv2d layers; found parameters of shapes "
              f"{[tuple(p.shape) for p in module.parameters()]}")
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    first_bias = _vectors(module, hidden, norms)
    second_bias = [b for b in _vectors(module, channels, norms)]
    return first[0], (first_bias[0] if first_bias else None), second[0], (second_bias[0] if second_bias else None)


def _mlp(v, w1, b1, w2, b2, relu_last=False):
    out = F.linear(F.relu(F.linear(v, w1, b1)), w2, b2)
    return F.relu(out) if relu_last else out


def _channel_gates(x, weights) -> dict[str, torch.Tensor]:
    """(B, C) gates for the correct formula and for each known mistake."""
    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    a, m = _mlp(avg, *weights), _mlp(mx, *weights)
    gates = {
        "correct": torch.sigmoid(a + m),
        "no sigmoid": a + m,
        "sigmoid per branch": torch.sigmoid(a) + torch.sigmoid(m),
        "relu last": torch.sigmoid(_mlp(avg, *weights, relu_last=True) + _mlp(mx, *weights, relu_last=True)),
        "avg only": torch.sigmoid(a),
        "max only": torch.sigmoid(m),
    }
    if x.shape[1] == x.shape[3]:  # pooling over (C, H) instead of (H, W) gives the right length
        gates["wrong axis"] = torch.sigmoid(_mlp(x.mean(dim=(1, 2)), *weights) + _mlp(x.amax(dim=(1, 2)), *weights))
        gates["wrong axis 2"] = torch.sigmoid(_mlp(x.mean(dim=(1, 3)), *weights) + _mlp(x.amax(dim=(1, 3)), *weights))
    return gates


CHANNEL_MESSAGES = {
    "no sigmoid": "the channel weights are not squashed: apply torch.sigmoid to the SUM of the two MLP "
                  "outputs, so that every weight lies in (0, 1)",
    "sigmoid per branch": "the sigmoid is in the wrong place: add the two MLP outputs first, then apply ONE "
                          "sigmoid, M_c = sigmoid(MLP(avg) + MLP(max))",
    "relu last": "there is a ReLU after the last MLP layer: the MLP is Linear -> ReLU -> Linear, and only "
                 "the sigmoid follows the second Linear (a ReLU there makes every weight at least 0.5)",
    "avg only": "only average pooling reaches the MLP: CBAM adds the max-pooled descriptor too, "
                "MLP(avg) + MLP(max)",
    "max only": "only max pooling reaches the MLP: CBAM adds the average-pooled descriptor too, "
                "MLP(avg) + MLP(max)",
    "wrong axis": "pooling runs over the wrong axes: the channel descriptor pools each channel over its "
                  "positions, x.mean(dim=(2, 3)) and x.amax(dim=(2, 3)), giving (B, C)",
}
CHANNEL_MESSAGES["wrong axis 2"] = CHANNEL_MESSAGES["wrong axis"]


def _diagnose(out, x, gate_shape_fn, gates: dict, messages: dict, what: str):
    """Compare out with x * gate for every variant; fail with the matching message."""
    expected = x * gate_shape_fn(gates["correct"])
    if _close(out, expected):
        return
    if out.shape != x.shape:
        for gate in gates.values():
            if _close(out, gate_shape_fn(gate)) or _close(out, gate_shape_fn(gate).expand_as(x)):
                _fail(f"{what} returns the attention weights, not the refined features: multiply the "
                      "gate with the input, return x * weights")
        _fail(f"{what} must return a tensor shaped like its input {tuple(x.shape)}, got {tuple(out.shape)}")
    for name, gate in gates.items():
        if name != "correct" and _close(out, x * gate_shape_fn(gate)):
            _fail(messages[name])
    if _close(out, gate_shape_fn(gates["correct"]).expand_as(x)):
        _fail(f"{what} returns the attention weights, not the refined features: multiply the gate with "
              "the input, return x * weights")
    _fail(f"{what}'s output differs from the formula (largest difference "
          f"{(out - expected).abs().max().item():.3g}); print the shapes after every step and compare "
          "with the chapter's walk-through")


def check_channel_attention(student_class, channels: int = 16, reduction: int = 4) -> str:
    """Check `student_class(channels, reduction)` against M_c(F) = sigmoid(MLP(avg) + MLP(max))."""
    hidden = channels // reduction
    module = _build(student_class, channels, reduction, what="ChannelAttention")
    for seed, shape in enumerate([(2, channels, channels, channels), (3, channels, 5, 7)]):
        _randomise(module, seed)
        weights = _channel_weights(module, channels, hidden)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(100 + seed))
        out = _run(module, x, "Pool over H and W (dims 2 and 3) to get (B, C) descriptors.")
        _diagnose(out, x, lambda g: g[:, :, None, None], _channel_gates(x, weights), CHANNEL_MESSAGES,
                  "ChannelAttention")
    return _passed("ChannelAttention")


# ----------------------------------------------------------------------------- spatial


def _spatial_parts(module: nn.Module, kernel_size: int):
    kernels = [p.detach() for p in module.parameters() if p.dim() == 4 and p.shape[1:] == (2, kernel_size, kernel_size)]
    if len(kernels) != 1 or kernels[0].shape[0] != 1:
        _fail(f"expected one {kernel_size}x{kernel_size} convolution from 2 maps to 1 (weight shape "
              f"(1, 2, {kernel_size}, {kernel_size})); found parameters of shapes "
              f"{[tuple(p.shape) for p in module.parameters()]}")
    kernel = kernels[0]
    bias = None
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.weight.shape == kernel.shape and m.bias is not None:
            bias = m.bias.detach()
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.num_features == 1]
    return kernel, bias, (norms[0] if norms else nn.Identity())


def _spatial_gates(x, kernel, bias, norm, padding) -> dict[str, torch.Tensor]:
    mean, mx = x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    conv = lambda maps, p=padding: norm(F.conv2d(maps, kernel, bias, padding=p))  # noqa: E731
    return {
        "correct": torch.sigmoid(conv(torch.cat([mean, mx], 1))),
        "correct max-mean": torch.sigmoid(conv(torch.cat([mx, mean], 1))),
        "no sigmoid": conv(torch.cat([mean, mx], 1)),
        "no sigmoid max-mean": conv(torch.cat([mx, mean], 1)),
    }


SPATIAL_MESSAGES = {
    "no sigmoid": "the spatial map is not squashed: apply torch.sigmoid after the convolution so every "
                  "weight lies in (0, 1)",
}
SPATIAL_MESSAGES["no sigmoid max-mean"] = SPATIAL_MESSAGES["no sigmoid"]
SPATIAL_HINT = ("Spatial attention pools over the channel axis, x.mean(dim=1, keepdim=True) and "
                "x.amax(dim=1, keepdim=True), concatenates the two (B, 1, H, W) maps along dim 1, and "
                "convolves them with padding kernel_size // 2.")


def _check_padding(module: nn.Module, kernel_size: int) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (kernel_size, kernel_size) and kernel_size > 1:
            if m.padding != (kernel_size // 2, kernel_size // 2):
                _fail(f"the {kernel_size}x{kernel_size} convolution has padding {m.padding}: use padding="
                      f"kernel_size // 2 = {kernel_size // 2} so the map keeps the input's H x W and "
                      "lines up with the features it weights")


def check_spatial_attention(student_class, kernel_size: int = 7) -> str:
    """Check `student_class(kernel_size)` against M_s(F) = sigmoid(conv_kxk([mean(F); max(F)]))
    (either map order; a BatchNorm after the convolution is allowed)."""
    module = _build(student_class, kernel_size, what="SpatialAttention")
    _check_padding(module, kernel_size)
    for seed, shape in enumerate([(2, 8, 9, 9), (3, 5, 6, 11)]):
        _randomise(module, seed)
        kernel, bias, norm = _spatial_parts(module, kernel_size)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(200 + seed))
        out = _run(module, x, SPATIAL_HINT)
        with torch.no_grad():
            gates = _spatial_gates(x, kernel, bias, norm, kernel_size // 2)
        if _close(out, x * gates["correct max-mean"]):
            continue  # the reference implementation's order; the paper writes [avg; max]
        if out.shape != x.shape and out.shape[-2:] != x.shape[-2:]:
            _fail(f"the output is {tuple(out.shape)} for an input {tuple(x.shape)}: {SPATIAL_HINT}")
        _diagnose(out, x, lambda g: g, {k: v for k, v in gates.items() if k != "correct max-mean"},
                  SPATIAL_MESSAGES, "SpatialAttention")
    return _passed("SpatialAttention")


# ----------------------------------------------------------------------------- CBAM


def _arrangements(x, channel_weights, spatial_parts) -> dict[str, torch.Tensor]:
    def channel(t):
        return torch.sigmoid(_mlp(t.mean(dim=(2, 3)), *channel_weights) + _mlp(t.amax(dim=(2, 3)), *channel_weights))[:, :, None, None]

    def spatial(t, order):
        kernel, bias, norm = spatial_parts
        mean, mx = t.mean(dim=1, keepdim=True), t.amax(dim=1, keepdim=True)
        maps = torch.cat([mean, mx] if order == "mean-max" else [mx, mean], 1)
        return torch.sigmoid(norm(F.conv2d(maps, kernel, bias, padding=kernel.shape[-1] // 2)))

    outputs = {}
    for order in ("mean-max", "max-mean"):
        refined = x * channel(x)
        outputs[("channel-spatial", order)] = refined * spatial(refined, order)
        refined = x * spatial(x, order)
        outputs[("spatial-channel", order)] = refined * channel(refined)
        outputs[("parallel", order)] = x * channel(x) * spatial(x, order)
        outputs[("channel only", order)] = x * channel(x)
        outputs[("spatial only", order)] = x * spatial(x, order)
    return outputs


ARRANGEMENTS = ("channel-spatial", "spatial-channel", "parallel")


def check_cbam(student_class, arrangement: str = "channel-spatial", channels: int = 16, reduction: int = 4,
               kernel_size: int = 7) -> str:
    """Check `student_class(channels, reduction, kernel_size)` against CBAM in `arrangement`:
    "channel-spatial" (the paper's), "spatial-channel" or "parallel" (x * M_c(x) * M_s(x))."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"unknown arrangement {arrangement!r}; choose one of {', '.join(ARRANGEMENTS)}")
    module = _build(student_class, channels, reduction, kernel_size, what="CBAM")
    _check_padding(module, kernel_size)
    for seed, shape in enumerate([(2, channels, 8, 8), (2, channels, 5, 9)]):
        _randomise(module, seed)
        channel_weights = _channel_weights(module, channels, channels // reduction)
        spatial_parts = _spatial_parts(module, kernel_size)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(300 + seed))
        out = _run(module, x, "Apply channel attention and spatial attention as the chapter shows.")
        with torch.no_grad():
            outputs = _arrangements(x, channel_weights, spatial_parts)
        if any(_close(out, outputs[(arrangement, order)]) for order in ("mean-max", "max-mean")):
            continue
        for (name, _order), expected in outputs.items():
            if _close(out, expected):
                if name.endswith("only"):
                    _fail(f"the block applies {name.replace(' only', '')} attention only: CBAM refines "
                          "the features with both gates")
                _fail(f"the block implements the {name} arrangement, but the exercise asks for "
                      f"{arrangement}: " + {
                          "channel-spatial": "F' = F * M_c(F), then out = F' * M_s(F')",
                          "spatial-channel": "F' = F * M_s(F), then out = F' * M_c(F')",
                          "parallel": "both gates from the same input: out = F * M_c(F) * M_s(F)"}[arrangement])
        _fail("the output matches no arrangement of the two gates; check each gate on its own with "
              "check_channel_attention and check_spatial_attention first")
    return _passed(f"CBAM ({arrangement})")


# ----------------------------------------------------------------------------- Grad-CAM


def _grad_cam_variants(model, images, targets, layer) -> dict[str, torch.Tensor]:
    """Grad-CAM maps (B, H, W) computed correctly and with each known mistake."""
    stored = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: stored.__setitem__("a", out))
    try:
        with torch.enable_grad():
            logits = model(images)
            (gradient,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), stored["a"])
    finally:
        handle.remove()
    activation = stored["a"].detach()
    size = images.shape[-2:]

    def finish(cam, upsample=True, per_image=True):
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0] if upsample else cam[:, 0]
        dims = (1, 2) if per_image else (0, 1, 2)
        low, high = cam.amin(dim=dims, keepdim=True), cam.amax(dim=dims, keepdim=True)
        return (cam - low) / (high - low)

    weighted = (gradient.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True)
    return {
        "correct": finish(F.relu(weighted)),
        "no relu": finish(weighted),
        "no mean": finish(F.relu((gradient * activation).sum(1, keepdim=True))),
        "batch scaling": finish(F.relu(weighted), per_image=False),
    }


GRAD_CAM_MESSAGES = {
    "no relu": "the ReLU is missing: Grad-CAM keeps only positive evidence, apply ReLU to the weighted sum "
               "of the activation maps before upsampling and normalising",
    "no mean": "the gradients are multiplied position by position: Grad-CAM weights each activation "
               "channel by the MEAN of its gradient over the positions (alpha_k), then sums over channels",
    "batch scaling": "the maps are scaled over the whole batch: scale each map to [0, 1] on its own, "
                     "per image (subtract its minimum, divide by its range)",
}


def check_grad_cam(student_function) -> str:
    """Check `student_function(model, images, targets, layer) -> (B, H, W) maps in [0, 1]`
    against Grad-CAM on a small CBAM ResNet with random weights (layer: its middle stage)."""
    from .models import build_model

    torch.manual_seed(0)
    model = build_model("resnet20", "cbam").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    # the middle stage: behind the last one, global pooling makes every gradient map constant,
    # which would hide whether a solution averages the gradients
    layer = model.stages[1]
    # per image, the class whose map has the most positive evidence (a map that is all
    # zero would make every correct solution divide 0 by 0)
    candidates = [_grad_cam_variants(model, images, torch.full((4,), c), layer)["correct"] for c in range(10)]
    spread = torch.stack([c.nan_to_num(0).flatten(1).std(1) for c in candidates])  # (10, B)
    targets = spread.argmax(0)
    variants = _grad_cam_variants(model, images, targets, layer)
    try:
        maps = student_function(model, images.clone(), targets.clone(), layer)
    except Exception as error:
        _fail(f"the function raised {type(error).__name__}: {error}")
    if not isinstance(maps, torch.Tensor):
        _fail(f"return a tensor of maps (B, H, W), got {type(maps).__name__}")
    maps = maps.detach().float()
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.shape[-2:] == (16, 16):
        _fail("the maps are 16x16, the size of the layer's output: upsample them to the input's 32x32 "
              "with F.interpolate(..., mode='bilinear', align_corners=False)")
    if maps.shape != variants["correct"].shape:
        _fail(f"expected maps of shape {tuple(variants['correct'].shape)}, got {tuple(maps.shape)}")
    if _close(maps, variants["correct"]):
        return _passed("Grad-CAM")
    for name, message in GRAD_CAM_MESSAGES.items():
        if _close(maps, variants[name]):
            _fail(message)
    if maps.amin() < -1e-6 or maps.amax() > 1 + 1e-4:
        _fail("the maps should lie in [0, 1]: normalise each by its own minimum and range")
    _fail("the maps differ from Grad-CAM: weight each activation channel by the mean of its gradient "
          "over the positions, sum over channels, ReLU, upsample bilinearly to the input size, and "
          "scale each map to [0, 1]")


def _passed(what: str) -> str:
    message = f"Correct: your {what} matches the reference on random inputs and weights."
    print(message)
    return message
