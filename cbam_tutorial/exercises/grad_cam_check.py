"""The check of chapter 9's exercise: a Grad-CAM function, graded on two models at two
layers against Grad-CAM computed here and against each mistake students make.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .grading import close
from .harness import ExerciseError, explain_exception, fail, failing_line, passed, time_limit


def _hooks(model: nn.Module) -> list:
    return [(name, kind, key) for name, m in model.named_modules()
            for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
            for key in getattr(m, kind, {})]


def _grad_cam_variants(model, images, targets, layer, only_correct: bool = False) -> dict:
    """Grad-CAM maps (B, H, W) computed correctly and (unless only_correct) with each known mistake."""
    stored = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: stored.__setitem__("a", out))
    try:
        with torch.enable_grad():
            inputs = images.detach().requires_grad_(True)
            logits = model(inputs)
            activation = stored["a"]
            score = logits.gather(1, targets[:, None]).sum()
            gradient, image_gradient = torch.autograd.grad(score, (activation, inputs), retain_graph=not only_correct)
            if not only_correct:
                probability = torch.softmax(logits, 1).gather(1, targets[:, None]).sum()
                (probability_gradient,) = torch.autograd.grad(probability, activation, retain_graph=True)
                loss = F.cross_entropy(logits, targets, reduction="sum")
                (loss_gradient,) = torch.autograd.grad(loss, activation, retain_graph=True)
                predicted = logits.argmax(1)
                (predicted_gradient,) = torch.autograd.grad(logits.gather(1, predicted[:, None]).sum(), activation)
    finally:
        handle.remove()
    a = activation.detach()
    size = images.shape[-2:]

    def scale(cam, per_image=True):
        dims = tuple(range(1, cam.dim())) if per_image else tuple(range(cam.dim()))
        low, high = cam.amin(dim=dims, keepdim=True), cam.amax(dim=dims, keepdim=True)
        return (cam - low) / (high - low)

    def finish(cam, mode="bilinear", per_image=True, relu_after=False):
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        cam = F.interpolate(cam, size=size, mode=mode, **kwargs)[:, 0]
        return scale(F.relu(cam) if relu_after else cam, per_image)

    def weighted(g, activations=a):
        return (g.mean(dim=(2, 3), keepdim=True) * activations).sum(1, keepdim=True)

    cam = weighted(gradient)
    if only_correct:
        return {"correct": finish(F.relu(cam))}
    return {
        "correct": finish(F.relu(cam)),
        "no relu": finish(cam),
        "relu after upsampling": finish(cam, relu_after=True),
        "no mean": finish(F.relu((gradient * a).sum(1, keepdim=True))),
        "batch scaling": finish(F.relu(cam), per_image=False),
        "absolute gradients": finish(F.relu(weighted(gradient.abs()))),
        "relu on gradients": finish(F.relu(weighted(F.relu(gradient)))),
        "unweighted": finish(F.relu(a.sum(1, keepdim=True))),
        "input gradient": scale(image_gradient.abs().amax(dim=1)),
        "nearest": finish(F.relu(cam), mode="nearest"),
        "bicubic": finish(F.relu(cam), mode="bicubic"),
        "probability": finish(F.relu(weighted(probability_gradient))),
        "loss": finish(F.relu(weighted(loss_gradient))),
        "targets ignored": finish(F.relu(weighted(predicted_gradient))),
        "batch-averaged weights": finish(F.relu((gradient.mean(dim=(0, 2, 3), keepdim=True) * a).sum(1, keepdim=True))),
        "scaled before upsampling": F.interpolate(scale(F.relu(cam)), size=size, mode="bilinear",
                                                  align_corners=False)[:, 0],
    }


GRAD_CAM_MESSAGES = {
    "no relu": "the ReLU is missing: Grad-CAM keeps only positive evidence, apply ReLU to the weighted sum "
               "of the activation maps before upsampling and normalising",
    "relu after upsampling": "the ReLU comes after the upsampling: apply it to the weighted sum at the "
                             "layer's resolution, then upsample",
    "no mean": "the gradients are multiplied position by position: Grad-CAM weights each activation "
               "channel by the MEAN of its gradient over the positions (alpha_k), then sums over channels",
    "batch scaling": "the maps are scaled over the whole batch: scale each map to [0, 1] on its own, "
                     "per image (subtract its minimum, divide by its range)",
    "absolute gradients": "the channel weights are means of ABSOLUTE gradients: Grad-CAM averages the signed "
                          "gradients, alpha_k = mean over positions of d score / d A_k",
    "relu on gradients": "a ReLU is applied to the gradients before averaging: average the signed gradients; "
                         "the only ReLU is on the weighted sum of the maps",
    "unweighted": "the activation maps are summed without weights: weight each channel by alpha_k, the mean "
                  "of its gradient over the positions",
    "input gradient": "these are gradients with respect to the input image (a saliency map): Grad-CAM uses the "
                      "gradients and activations of the given layer",
    "nearest": "the maps are upsampled with nearest-neighbour interpolation: use mode='bilinear' "
               "(align_corners=False)",
    "bicubic": "the maps are upsampled bicubically: use mode='bilinear' (align_corners=False)",
    "probability": "the gradients are of the softmax probability: Grad-CAM differentiates the class SCORE "
                   "(the logit), logits[i, target_i]",
    "loss": "the gradients are of the loss: Grad-CAM differentiates the class score (the logit) of the "
            "target, not the cross-entropy",
    "targets ignored": "the maps explain the predicted class, not the given targets: take the score of "
                       "targets[i] for image i, logits[torch.arange(B), targets]",
    "batch-averaged weights": "the channel weights are averaged over the batch: each image gets its own "
                              "alpha_k, gradient.mean(dim=(2, 3)) (not over dim 0)",
    "scaled before upsampling": "the maps are scaled to [0, 1] before upsampling: upsample first, then scale "
                                "each map by its own minimum and range",
}


def _grad_cam_model(attention, seed):
    from ..models import build_model

    torch.manual_seed(seed)
    model = build_model("resnet20", attention).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.running_mean.normal_(0, 0.1)
                m.bias.normal_(0, 0.1)
    return model


def _grad_cam_targets(model, images, layer) -> torch.Tensor:
    """Per image, a class other than the predicted one whose map has the most positive evidence
    (so that ignoring the targets shows, and no correct map is all zero)."""
    with torch.no_grad():
        predicted = model(images).argmax(1)
    candidates = [_grad_cam_variants(model, images, torch.full((len(images),), c), layer, only_correct=True)["correct"]
                  for c in range(10)]
    spread = torch.stack([c.nan_to_num(0).flatten(1).std(1) for c in candidates])  # (10, B)
    spread[predicted, torch.arange(len(images))] = -1
    return spread.argmax(0)


def check_grad_cam(student_function) -> str:
    """Check `student_function(model, images, targets, layer) -> (B, H, W) maps in [0, 1]` against
    Grad-CAM, on a CBAM and a plain ResNet-20 with random weights, at two layers (the middle
    stage and a block of the first), and that it leaves no hook behind and the model's mode as
    it was."""
    cases = [("cbam", 0, lambda m: m.stages[1]), (None, 1, lambda m: m.stages[0][2])]
    for attention, seed, pick_layer in cases:
        model = _grad_cam_model(attention, seed)
        layer = pick_layer(model)
        images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7 + seed))
        targets = _grad_cam_targets(model, images, layer)
        variants = _grad_cam_variants(model, images, targets, layer)
        hooks_before, modes_before = _hooks(model), [m.training for m in model.modules()]
        try:
            with time_limit("your Grad-CAM function"):
                maps = student_function(model, images.clone(), targets.clone(), layer)
        except ExerciseError:
            raise
        except Exception as error:
            fail(f"the function raised {explain_exception(error)}{failing_line(error)}")
        if not isinstance(maps, torch.Tensor):
            fail(f"return a tensor of maps (B, H, W), got {type(maps).__name__}")
        maps = maps.detach().float()
        if maps.dim() == 4 and maps.shape[1] == 1:
            maps = maps[:, 0]
        layer_size = variants["correct"].shape  # compared below with the maps' size
        if maps.dim() == 3 and maps.shape[-2:] != layer_size[-2:] and maps.shape[0] == layer_size[0]:
            fail(f"the maps are {maps.shape[-2]}x{maps.shape[-1]}, not the input's {layer_size[-2]}x{layer_size[-1]}: "
                 "upsample them with F.interpolate(..., size=images.shape[-2:], mode='bilinear', "
                 "align_corners=False)")
        if maps.shape != layer_size:
            fail(f"expected maps of shape {tuple(layer_size)}, got {tuple(maps.shape)}")
        if not close(maps, variants["correct"]):
            for name, message in GRAD_CAM_MESSAGES.items():
                if close(maps, variants[name]):
                    fail(message)
            train_mode = copy.deepcopy(model).train()
            in_train_mode = _grad_cam_variants(train_mode, images, targets, _same_module(train_mode, model, layer),
                                               only_correct=True)["correct"]
            if close(maps, in_train_mode):
                fail("the maps were computed with the model in training mode (BatchNorm then uses the batch's "
                     "statistics): call model.eval() before explaining it")
            if maps.amin() < -1e-6 or maps.amax() > 1 + 1e-4:
                fail("the maps should lie in [0, 1]: scale each by its own minimum and range")
            fail("the maps differ from Grad-CAM: weight each activation channel by the mean of its gradient "
                 "over the positions, sum over channels, ReLU, upsample bilinearly to the input size, and "
                 "scale each map to [0, 1]")
        if _hooks(model) != hooks_before:
            fail("your function leaves hooks on the model: keep the handle that register_forward_hook (or "
                 "register_full_backward_hook) returns and call handle.remove() in a finally block")
        if [m.training for m in model.modules()] != modes_before:
            fail("your function leaves the model in another mode than it found it (train/eval): restore "
                 "model.training before returning")
    return passed("Grad-CAM", "on two models at two layers, and leaves the model as it found it")


def _same_module(copy_of_model: nn.Module, model: nn.Module, layer: nn.Module) -> nn.Module:
    name = next(n for n, m in model.named_modules() if m is layer)
    return copy_of_model.get_submodule(name)
