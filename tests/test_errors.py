"""Bad input gets a ValueError that names the valid choices or the expected shape."""
import pytest
import torch

from cbam_tutorial import CBAM, ChannelAttention, SEBlock, SpatialAttention, build_attention
from cbam_tutorial.models import build_model


@pytest.mark.parametrize("module", [ChannelAttention(16), SpatialAttention(), CBAM(16), SEBlock(16)],
                         ids=["cam", "sam", "cbam", "se"])
@pytest.mark.parametrize("shape", [(16, 8, 8), (2, 16, 8, 8, 1), (16,)])
def test_non_4d_input(module, shape):
    with pytest.raises(ValueError, match=r"4-D feature map of shape \(B, C, H, W\)"):
        module(torch.randn(shape))


@pytest.mark.parametrize("module", [ChannelAttention(16), CBAM(16), SEBlock(16)], ids=["cam", "cbam", "se"])
def test_wrong_channel_count(module):
    with pytest.raises(ValueError, match=r"expected 16 channels \(shape \(B, 16, H, W\)\), got shape \(2, 8, 4, 4\)"):
        module(torch.randn(2, 8, 4, 4))


def test_reduction_larger_than_channels():
    with pytest.raises(ValueError, match="reduction=32 is larger than channels=16"):
        ChannelAttention(16, reduction=32)
    with pytest.raises(ValueError, match="reduction=32 is larger than channels=16"):
        CBAM(16, reduction=32)


@pytest.mark.parametrize("kernel_size", [4, 0, -3, 2.5])
def test_bad_kernel_size(kernel_size):
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer"):
        SpatialAttention(kernel_size)


def test_unknown_poolings_and_arrangement():
    with pytest.raises(ValueError, match="unknown channel pooling 'median'; choose one of 'avg', 'max', 'avg\\+max'"):
        ChannelAttention(16, pooling="median")
    with pytest.raises(ValueError, match="unknown spatial pooling 'avg'; choose one of 'avg\\+max', 'conv1x1'"):
        SpatialAttention(pooling="avg")
    with pytest.raises(ValueError, match="unknown arrangement 'serial'; choose one of 'channel-spatial', "
                                         "'spatial-channel', 'parallel'"):
        CBAM(16, arrangement="serial")
    with pytest.raises(ValueError, match="pass channels=C"):
        SpatialAttention(pooling="conv1x1")


def test_unknown_model_and_attention():
    with pytest.raises(ValueError, match="unknown model 'resnet32'; choose one of 'resnet20', 'resnet56', "
                                         "'resnet18', 'resnet50'"):
        build_model("resnet32")
    with pytest.raises(ValueError, match="unknown attention 'eca'; choose one of None, 'se', 'cbam', 'cam', 'sam'"):
        build_model("resnet20", attention="eca")
    with pytest.raises(ValueError, match="attention=None takes no attention options"):
        build_attention(None, 16, reduction=4)
    with pytest.raises(ValueError, match="attention 'sam' takes no option 'reduction'; its options are kernel_size"):
        build_model("resnet20", attention="sam", reduction=4)


def test_model_input_with_wrong_channels():
    with pytest.raises(ValueError, match=r"expected 3 channels"):
        build_model("resnet20")(torch.randn(1, 1, 32, 32))
