"""ResNets with pluggable attention.

    build_model("resnet20", attention="cbam", reduction=16, kernel_size=7)

- resnet20, resnet56: the CIFAR ResNets of He et al. (2016, section 4.2): a 3x3 stem with
  16 channels, three stages of n basic blocks with 16, 32 and 64 channels (n = 3 and 9),
  global average pooling and one linear layer; option-A shortcuts (parameter-free:
  subsample and pad with zero channels), as in the paper; 0.27M and 0.85M parameters.
- resnet18: the usual CIFAR variant of ResNet-18 (a 3x3 stem without max pooling, stages
  of 64, 128, 256, 512 channels, projection shortcuts); 11.2M parameters.
- resnet50: torchvision's ImageNet ResNet-50 (bottleneck blocks), so that parameter counts
  and FLOPs can be compared with the paper's Table 4.

Attention ("se", "cbam", "cam", "sam"; see attention.build_attention) sits where the
reference implementation puts it: on the output of the last BatchNorm of each residual
branch, before the shortcut is added. Every block keeps it as `block.attention`.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _check_choice, build_attention, check_feature_map

MODEL_NAMES = ("resnet20", "resnet56", "resnet18", "resnet50")


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN-[attention], plus shortcut, then ReLU.

    Shapes: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride).
    shortcut: "A" (subsample + zero-pad channels, no parameters) or "B" (1x1 conv + BN),
    used only when the shape changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 attention: str | None = None, shortcut: str = "A", **attention_options) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.attention = build_attention(attention, out_channels, **attention_options)
        self.pad_channels = 0
        self.stride = stride
        self.projection = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.pad_channels = out_channels - in_channels
            else:
                self.projection = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            return self.projection(x)
        if self.stride != 1 or self.pad_channels:
            x = x[:, :, :: self.stride, :: self.stride]
            half = self.pad_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.attention is not None:
            out = self.attention(out)
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 images: (B, 3, 32, 32) -> logits (B, num_classes).

    `stage_channels` and `blocks_per_stage` set the shape; blocks are reachable by name
    as `stages.<stage>.<block>` (e.g. "stages.2.1"), their attention as "...attention".
    """

    def __init__(self, stage_channels, blocks_per_stage: int, stem_channels: int,
                 num_classes: int = 10, attention: str | None = None, shortcut: str = "A",
                 **attention_options) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], stem_channels
        for index, width in enumerate(stage_channels):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, attention, shortcut,
                                         **attention_options))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and "attention" not in name:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> last stage's feature map (B, C_last, H / 4, W / 4)."""
        check_feature_map(x, 3)
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _imagenet_resnet50(num_classes: int, attention: str | None, **attention_options) -> nn.Module:
    """torchvision's ResNet-50 with attention after bn3 of every bottleneck.

    The attention module is placed as `block.attention` and `block.bn3` becomes
    Sequential(bn3, attention), so torchvision's own forward applies it before the add.
    """
    from torchvision.models import resnet50

    model = resnet50(weights=None, num_classes=num_classes)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            module = build_attention(attention, block.bn3.num_features, **attention_options)
            block.attention = module
            if module is not None:
                block.bn3 = nn.Sequential(block.bn3, module)
    return model


def build_model(name: str, attention: str | None = None, num_classes: int = 10,
                **attention_options) -> nn.Module:
    """Build `name` ("resnet20", "resnet56", "resnet18", "resnet50") with `attention`.

    attention: None, "se", "cbam", "cam" or "sam"; `attention_options` go to the attention
    module (e.g. reduction=8, kernel_size=3, arrangement="parallel", pooling="max").
    Input (B, 3, 32, 32) for the CIFAR models, (B, 3, 224, 224) for resnet50;
    output logits (B, num_classes).
    """
    _check_choice("model", name, MODEL_NAMES)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if name == "resnet50":
        return _imagenet_resnet50(num_classes, attention, **attention_options)
    if name == "resnet18":
        return CifarResNet((64, 128, 256, 512), 2, 64, num_classes, attention, shortcut="B",
                           **attention_options)
    depth = {"resnet20": 3, "resnet56": 9}[name]
    return CifarResNet((16, 32, 64), depth, 16, num_classes, attention, shortcut="A",
                       **attention_options)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every block's attention module, keyed by the block's name (e.g. "stages.0.1")."""
    return {
        name: module.attention
        for name, module in model.named_modules()
        if isinstance(getattr(module, "attention", None), nn.Module)
        and not isinstance(module, nn.Sequential)
    }


@contextmanager
def evaluation_mode(model: nn.Module):
    """Run the block with `model` in eval mode, then give every submodule the mode it had
    (even when the block fails), so that helpers never leave a model in another mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
