"""The training loop itself: one epoch of training, and evaluation with test-time
augmentation.

Chapter 5 shows these functions line by line; train.train() wraps them with what a run
needs besides (profiles, resuming, checkpoints, results files). Everything here works on
any classifier of (B, 3, H, W) images and any iterable of (images, labels) batches.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .models import evaluation_mode

TTA_MODES = ("none", "flip", "flip+translate")
TTA_VIEWS = {"none": 1, "flip": 2, "flip+translate": 4}  # forward passes per image


def autocast(device: torch.device, precision: str):
    """bf16 or fp16 autocast on `device` for precision "bf16" or "fp16"; off in fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def one_cycle_lr(step: int, total_steps: int, peak: float, warmup_fraction: float,
                 start_fraction: float = 0.0, end_fraction: float = 0.0) -> float:
    """Linear warm-up from start_fraction * peak to `peak` over the first
    warmup_fraction of the steps, then linear decay to end_fraction * peak at
    `total_steps`."""
    warmup = max(1, int(total_steps * warmup_fraction))
    start, end = start_fraction * peak, end_fraction * peak
    if step < warmup:
        return start + (peak - start) * (step + 1) / warmup
    remaining = max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return end + (peak - end) * remaining


class Lookahead:
    """Slow weights that trail the trained ("fast") ones (Zhang et al., 2019).

    Every `every` steps, call update(model, decay): the slow copy moves a fraction
    1 - decay of the way to the model's weights, then the model is set to the slow copy.
    Every floating-point tensor of the state dict takes part (BatchNorm statistics too).
    With a decay that grows during training it acts as an EMA that the optimizer keeps
    returning to; update(model, 1.0) at the end hands the model the slow weights.
    """

    def __init__(self, model: nn.Module) -> None:
        self.slow = {name: tensor.detach().clone()
                     for name, tensor in model.state_dict().items()
                     if tensor.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(state[name], 1 - decay)
            state[name].copy_(slow)

    def state_dict(self) -> dict:
        return dict(self.slow)

    def load_state_dict(self, state: dict) -> None:
        for name, tensor in state.items():
            self.slow[name].copy_(tensor)


def train_one_epoch(model: nn.Module, batches: Iterable,
                    optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                    learning_rate: Callable[[int], float], first_step: int,
                    precision: str = "fp32",
                    scaler: torch.amp.GradScaler | None = None,
                    after_step: Callable[[int], None] | None = None) -> dict:
    """One pass over `batches` of (images (B, 3, H, W), labels (B,)).

    Returns {"loss": mean loss, "accuracy": accuracy} over the epoch's images.

    learning_rate(step) gives the rate of every optimizer step; steps are numbered from
    `first_step` on, so that a schedule runs across epochs. after_step(step) runs after
    each update (e.g. an EMA or lookahead of the weights).
    """
    model.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen, step = 0, first_step
    for step, (images, labels) in enumerate(batches, start=first_step):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step) * group.get("lr_scale", 1.0)
        with autocast(device, precision):
            logits = model(images)
            loss = loss_fn(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # fp16: scale the loss, or small gradients underflow
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if after_step is not None:
            after_step(step)
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    if seen == 0:
        raise ValueError("the epoch had no batches: the training set is smaller "
                         "than one batch")
    return {"loss": loss_sum.item() / seen, "accuracy": correct.item() / seen}


def shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """(B, C, H, W) images moved `pixels` right and down (negative: left and up),
    the border filled by reflection."""
    if pixels == 0:
        return images
    p = abs(pixels)
    padded = nn.functional.pad(images, (p, p, p, p), mode="reflect")
    height, width = images.shape[-2:]
    start = p - pixels
    return padded[..., start:start + height, start:start + width]


def tta_logits(model: nn.Module, images: torch.Tensor,
               tta: str = "flip") -> torch.Tensor:
    """Logits (B, classes) averaged over views of (B, 3, H, W) `images`.

    "none": the image itself; "flip": the image and its mirror image;
    "flip+translate": those two (weight 1/2) and both moved by one pixel, the image
    down-right and the mirror image up-left (weight 1/2).
    """
    if tta not in TTA_MODES:
        choices = ", ".join(map(repr, TTA_MODES))
        raise ValueError(f"tta must be one of {choices}, got {tta!r}")
    logits = model(images)
    if tta == "none":
        return logits
    mirrored = images.flip(3)
    logits = (logits + model(mirrored)) / 2
    if tta == "flip+translate":
        moved = (model(shift(images, 1)) + model(shift(mirrored, -1))) / 2
        logits = (logits + moved) / 2
    return logits


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, precision: str = "fp32",
             tta: str = "flip") -> dict:
    """Mean cross-entropy and accuracy of `model` over `batches` of (images, labels),
    in eval mode."""
    total_loss, correct, count = 0.0, 0, 0
    device = next(model.parameters()).device
    with evaluation_mode(model):
        for images, labels in batches:
            with autocast(device, precision):
                logits = tta_logits(model, images, tta).float()
            loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
            total_loss += loss.item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
    if count == 0:
        raise ValueError("nothing to evaluate: no batches")
    return {"loss": total_loss / count, "accuracy": correct / count}
