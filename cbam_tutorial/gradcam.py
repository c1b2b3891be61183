"""Grad-CAM (Selvaraju et al., 2017): which pixels the class score depends on, seen from one layer.

    result = grad_cam(model, x)                     # layer: the last convolutional stage
    result = grad_cam(model, x, target=3, layer="stages.1")
    result.maps          # (B, H, W) in [0, 1], upsampled to the input size
    result.targets       # (B,) the class each map explains (the prediction by default)
    result.probabilities # (B,) the softmax probability of that class

For a layer output A (B, K, h, w) and the class score y_c, the map is
ReLU(sum_k alpha_k A_k) with alpha_k = mean over (h, w) of dy_c / dA_k, upsampled
bilinearly to the input size and scaled to [0, 1] per image.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .images import check_model_input
from .models import evaluation_mode


@dataclass
class GradCAMResult:
    maps: torch.Tensor  # (B, H, W) float in [0, 1]
    targets: torch.Tensor  # (B,) int64
    probabilities: torch.Tensor  # (B,) probability of the target class
    logits: torch.Tensor  # (B, classes)
    layer: str
    layer_size: tuple = ()  # (h, w) of the explained layer's maps, before upsampling


def default_layer(model: nn.Module) -> str:
    """The model's `explained_layer` if it names one (FastNet: its last stage of 8 x 8 or more);
    else the last convolutional stage: "stages.<last>" for the CIFAR ResNets, "layer4" for ResNet-50."""
    if isinstance(getattr(model, "explained_layer", None), str):
        return model.explained_layer
    if hasattr(model, "stages"):
        return f"stages.{len(model.stages) - 1}"
    if hasattr(model, "layer4"):
        return "layer4"
    convolutions = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ValueError("the model has no Conv2d layer; name the layer to explain with layer=...")
    return convolutions[-1]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name`, or a ValueError that suggests the closest names."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"the model has no layer {name!r}{hint} "
                         f"(names as in model.named_modules(), e.g. {default_layer(model)!r})")
    return modules[name]


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    batch, classes = logits.shape
    if target is None:
        return logits.argmax(1)
    targets = torch.as_tensor(target, device=logits.device)
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"target must be a class index or a sequence of them, got {target!r}")
    targets = targets.long().expand(batch) if targets.dim() == 0 else targets.long()
    if targets.shape != (batch,):
        raise ValueError(f"target must be one class index or one per image ({batch}), "
                         f"got shape {tuple(targets.shape)}")
    if (targets < 0).any() or (targets >= classes).any():
        raise ValueError(f"target classes must lie in [0, {classes - 1}], got {targets.tolist()}")
    return targets


def grad_cam(model: nn.Module, images: torch.Tensor, target=None, layer: str | None = None) -> GradCAMResult:
    """Grad-CAM maps for a batch.

    Args:
        model: any classifier of the package (evaluated in eval mode; its mode is restored).
        images: (B, 3, H, W) model inputs (see images.to_model_input).
        target: None (each image's predicted class), one class index for all images, or a
            sequence of B class indices.
        layer: a name from model.named_modules() (default: default_layer(model)).
    """
    check_model_input(images)
    layer = layer or default_layer(model)
    module = find_layer(model, layer)
    captured = {}

    def keep_output(_module, _inputs, output):
        captured["activation"] = output

    handle = module.register_forward_hook(keep_output)
    try:
        with evaluation_mode(model), torch.enable_grad():
            # a model without trainable parameters would give the layer output no graph
            inputs = images.detach().requires_grad_(True)
            logits = model(inputs)
            if "activation" not in captured or not isinstance(captured["activation"], torch.Tensor):
                raise ValueError(f"layer {layer!r} did not produce a tensor in the forward pass")
            activation = captured["activation"]
            if activation.dim() != 4:
                raise ValueError(f"layer {layer!r} gives shape {tuple(activation.shape)}; Grad-CAM "
                                 "needs a (B, K, h, w) feature map")
            targets = _targets(target, logits)
            score = logits.gather(1, targets[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, activation)
        weights = gradient.float().mean(dim=(2, 3), keepdim=True)  # alpha: (B, K, 1, 1)
        cam = F.relu((weights * activation.detach().float()).sum(dim=1, keepdim=True))  # (B, 1, h, w)
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        low = cam.amin(dim=(1, 2), keepdim=True)
        high = cam.amax(dim=(1, 2), keepdim=True)
        spread = high - low
        # maps can be tiny (a weak layer); dividing by spread + eps would shrink them
        maps = torch.where(spread > 0, (cam - low) / spread.clamp_min(1e-30), torch.zeros_like(cam))
        probabilities = logits.detach().float().softmax(1).gather(1, targets[:, None])[:, 0]
        return GradCAMResult(maps, targets, probabilities, logits.detach(), layer,
                             tuple(activation.shape[-2:]))
    finally:
        handle.remove()
