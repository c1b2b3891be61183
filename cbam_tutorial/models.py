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
- fastnet: a network built for accuracy per second (FastNet below): a frozen
  patch-whitening layer and three stages of convolution, max pooling and a one-convolution
  residual block, in the spirit of the fast CIFAR-10 recipes (Page's ResNet-9, airbench).

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

MODEL_NAMES = ("resnet20", "resnet56", "resnet18", "resnet50", "fastnet")


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


class PatchWhitening(nn.Module):
    """A frozen first layer that decorrelates the pixels of every 2 x 2 patch.

    Shapes: (B, 3, H, W) -> (B, 2 * 3 * patch**2, H - patch + 1, W - patch + 1).
    Its filters are the eigenvectors of the training images' patch covariance, each divided
    by the square root of its eigenvalue (plus `eps`), and their negatives (so that a ReLU
    or GELU after it keeps both signs). Call fit(images) once before training; until then
    it is a plain random convolution. The weight is a buffer (never trained); the bias is a
    parameter.
    """

    def __init__(self, in_channels: int = 3, patch: int = 2, eps: float = 5e-4) -> None:
        super().__init__()
        self.patch, self.eps = patch, eps
        dims = in_channels * patch * patch
        self.out_channels = 2 * dims
        self.register_buffer("weight", torch.randn(self.out_channels, in_channels, patch, patch) / dims ** 0.5)
        self.bias = nn.Parameter(torch.zeros(self.out_channels))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from (N, C, H, W) float images, normalised as the network sees them."""
        check_feature_map(images, self.weight.shape[1])
        patches = F.unfold(images.float(), self.patch).transpose(1, 2).reshape(-1, self.out_channels // 2)
        patches = patches.double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        filters = eigenvectors.T / (eigenvalues.clamp(min=0)[:, None] + self.eps).sqrt()
        filters = filters.flip(0).reshape(-1, *self.weight.shape[1:]).to(self.weight)
        self.weight.copy_(torch.cat([filters, -filters]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class FastStage(nn.Module):
    """conv3x3 -> 2x2 max pool -> BN -> act, then a residual block of one convolution.

    Shapes: (B, C_in, H, W) -> (B, C_out, ceil(H / 2), ceil(W / 2)).
    The residual branch is conv3x3-BN-[attention]; its output is added to the block's
    input and passed through the activation: attention sits on the output of the last
    BatchNorm of the branch, before the identity is added, as in the paper. With
    residual=False the identity is left out (airbench's plain conv-BN-act group).
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str = "gelu",
                 attention: str | None = None, bn_momentum: float = 0.1, residual: bool = True,
                 **attention_options) -> None:
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.residual_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.residual_bn = nn.BatchNorm2d(out_channels, momentum=bn_momentum)
        self.attention = build_attention(attention, out_channels, **attention_options)
        self.activation = {"gelu": nn.GELU(), "relu": nn.ReLU()}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.bn(self.pool(self.conv(x))))
        branch = self.residual_bn(self.residual_conv(x))
        if self.attention is not None:
            branch = self.attention(branch)
        return self.activation(x + branch if self.residual else branch)


class FastNet(nn.Module):
    """A CIFAR network built for accuracy per second: (B, 3, 32, 32) -> logits (B, num_classes).

    Args:
        widths: output channels of the three stages.
        whitening: a frozen 2 x 2 patch-whitening first layer (see PatchWhitening; call
            `model.stem.fit(images)` before training) instead of a trained 3 x 3 convolution.
        activation: "gelu" or "relu".
        attention_min_size: stages whose output is smaller than this (in pixels per side)
            carry no attention; with 32 x 32 inputs the stages give 16, 8 and 4 pixels, so
            the default 8 puts attention in the first two, where a 3 x 3 against 7 x 7
            spatial gate is a real question.
        head_scale: the logits are multiplied by it (a fixed temperature; it sets the
            learning rate the head needs).
        dirac_init: start each stage's first convolution as a partial identity (its first
            C_in filters pass their input channel through), which trains faster from scratch.
        bn_momentum: how fast the running statistics of every BatchNorm (those inside the
            attention modules too) follow the batches (PyTorch's convention: the weight of the
            newest batch). Faster than PyTorch's 0.1 because the weights move fast under the
            fast recipe: slow statistics lag behind them and the model scores worse in eval
            mode than in training.
        residual: add each stage's input to the output of its second convolution (the
            residual block the paper's attention sits in); False gives airbench's plain
            stages, for comparison.
        bn_scales: train the scales (weights) of the network's own BatchNorms. Off by default:
            they stay 1 and only the BatchNorm biases train, so that every convolution is
            followed by a normalisation with no learned gain (the attention modules' own
            BatchNorms keep theirs).

    Stages are reachable as `stages.0` .. `stages.2`; their attention as `stages.<i>.attention`;
    `explained_layer` names the last stage with maps of at least attention_min_size pixels.
    Feature maps: stem (B, 24, 31, 31) with whitening, (B, 32, 32, 32) without; stages
    (B, w0, 16, 16), (B, w1, 8, 8), (B, w2, 4, 4).
    """

    def __init__(self, num_classes: int = 10, widths=(64, 256, 256), whitening: bool = True,
                 activation: str = "gelu", attention: str | None = None, attention_min_size: int = 8,
                 head_scale: float = 1 / 9, dirac_init: bool = True, bn_momentum: float = 0.4,
                 bn_scales: bool = False, residual: bool = True, **attention_options) -> None:
        super().__init__()
        _check_choice("activation", activation, ("gelu", "relu"))
        if len(widths) != 3 or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be three positive integers, got {widths!r}")
        if whitening:
            self.stem = PatchWhitening(3, patch=2)
            channels = self.stem.out_channels
            self.stem_activation = {"gelu": nn.GELU(), "relu": nn.ReLU()}[activation]
        else:
            channels = 32
            self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
            self.stem_activation = nn.Sequential(nn.BatchNorm2d(channels, momentum=bn_momentum),
                                                 {"gelu": nn.GELU(), "relu": nn.ReLU()}[activation])
        size, stages = 31 if whitening else 32, []
        for width in widths:
            size = -(-size // 2)
            carries = attention if size >= attention_min_size else None
            stages.append(FastStage(channels, width, activation, carries, bn_momentum, residual,
                                    **(attention_options if carries else {})))
            channels = width
        self.stages = nn.Sequential(*stages)
        # the last stage whose maps are at least attention_min_size pixels: what Grad-CAM
        # explains by default (the last stage's 4 x 4 maps are too coarse to show much)
        sizes = [-(-(31 if whitening else 32) // 2 ** (i + 1)) for i in range(3)]
        self.explained_layer = f"stages.{max([i for i, s in enumerate(sizes) if s >= attention_min_size] or [2])}"
        self.head = nn.Linear(channels, num_classes, bias=False)
        self.head_scale = head_scale
        self._init_weights(dirac_init)
        for name, module in self.named_modules():  # the attention modules' BatchNorms too
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
                if not bn_scales and "attention" not in name:
                    module.weight.requires_grad_(False)

    def _init_weights(self, dirac_init: bool) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and "attention" not in name and dirac_init:
                out_channels, in_channels = module.weight.shape[:2]
                with torch.no_grad():
                    identity = min(out_channels, in_channels)
                    nn.init.dirac_(module.weight[:identity, :identity])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the last stage's feature map (B, widths[2], H / 8, W / 8)."""
        check_feature_map(x, 3)
        return self.stages(self.stem_activation(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3))) * self.head_scale


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
    """Build `name` ("resnet20", "resnet56", "resnet18", "resnet50", "fastnet") with `attention`.

    attention: None, "se", "cbam", "cam" or "sam"; `attention_options` go to the attention
    module (e.g. reduction=8, kernel_size=3, arrangement="parallel", pooling="max").
    Input (B, 3, 32, 32) for the CIFAR models, (B, 3, 224, 224) for resnet50;
    output logits (B, num_classes).
    """
    _check_choice("model", name, MODEL_NAMES)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if name == "fastnet":
        return FastNet(num_classes, attention=attention, **attention_options)
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
