"""CBAM Tutorial: the Convolutional Block Attention Module (Woo et al., ECCV 2018) in PyTorch."""
from .attention import CBAM, ChannelAttention, SEBlock, SpatialAttention, build_attention

__all__ = ["CBAM", "ChannelAttention", "SEBlock", "SpatialAttention", "build_attention"]
__version__ = "0.1.0"
