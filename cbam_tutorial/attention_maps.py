"""Every block's attention weights for a batch, from one forward pass.

    maps = extract_attention(model, x)
    maps["stages.2.0"]["channel"]   # (B, C) channel weights of that block
    maps["stages.2.0"]["spatial"]   # (B, H, W) its spatial map (CBAM and SAM blocks only)
"""
from __future__ import annotations

import torch
from torch import nn

from .images import check_model_input
from .models import attention_modules, evaluation_mode


def extract_attention(model: nn.Module, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """{block name: {"channel": (B, C), "spatial": (B, H, W)}} for an input batch (B, 3, H, W).

    The model runs once in eval mode without gradients; its mode and the modules'
    keep_attention flags are restored afterwards.
    """
    check_model_input(images)
    modules = attention_modules(model)
    if not modules:
        raise ValueError("the model has no attention modules; build it with attention='cbam', "
                         "'se', 'cam' or 'sam'")
    saved = {name: module.keep_attention for name, module in modules.items()}
    try:
        for module in modules.values():
            module.keep_attention, module.last_attention = True, None
        with evaluation_mode(model), torch.no_grad():
            model(images)
        maps = {}
        for name, module in modules.items():
            weights = module.last_attention or {}
            maps[name] = {}
            if "channel" in weights:
                maps[name]["channel"] = weights["channel"].float().flatten(1).cpu()
            if "spatial" in weights:
                maps[name]["spatial"] = weights["spatial"].float()[:, 0].cpu()
        return maps
    finally:
        for name, module in modules.items():
            module.keep_attention, module.last_attention = saved[name], None
