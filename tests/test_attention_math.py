"""The attention formulas of the paper, checked on small inputs computed by hand."""
import math

import pytest
import torch

from cbam_tutorial import CBAM, ChannelAttention, SEBlock, SpatialAttention


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_channel_attention_by_hand():
    # two channels, r = 2: the MLP is 2 -> 1 -> 2 with hand-set weights and no biases
    module = ChannelAttention(2, reduction=2, mlp_bias=False)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
        module.mlp[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.0, 1.0]]]])
    # avg = (2.5, 0), max = (4, 1); MLP(avg) = relu(2.5) * (1, -1); MLP(max) = relu(5) * (1, -1)
    gate = torch.tensor([sigmoid(7.5), sigmoid(-7.5)])
    out, weights = module(x, return_attention=True)
    torch.testing.assert_close(weights["channel"].flatten(), gate)
    torch.testing.assert_close(out, x * gate[None, :, None, None])


@pytest.mark.parametrize("pooling, descriptor", [("avg", (2.5, 0.0)), ("max", (4.0, 1.0))])
def test_channel_attention_single_pooling_by_hand(pooling, descriptor):
    module = ChannelAttention(2, reduction=2, pooling=pooling, mlp_bias=False)
    with torch.no_grad():
        module.mlp[0].weight.copy_(torch.tensor([[1.0, 1.0]]))
        module.mlp[2].weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.0, 1.0]]]])
    hidden = max(sum(descriptor), 0.0)
    _, weights = module(x, return_attention=True)
    torch.testing.assert_close(weights["channel"].flatten(), torch.tensor([sigmoid(hidden), sigmoid(-hidden)]))


def test_se_is_channel_attention_with_average_pooling():
    se, cam = SEBlock(32, reduction=4), ChannelAttention(32, reduction=4, pooling="avg")
    cam.load_state_dict(se.state_dict())
    x = torch.randn(3, 32, 5, 5)
    torch.testing.assert_close(se(x), cam(x))
    # and explicitly: sigmoid(W2 relu(W1 avg + b1) + b2)
    avg = x.mean(dim=(2, 3))
    w1, b1, w2, b2 = se.mlp[0].weight, se.mlp[0].bias, se.mlp[2].weight, se.mlp[2].bias
    gate = torch.sigmoid(torch.relu(avg @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


@pytest.mark.parametrize("map_order", ["max-mean", "mean-max"])
def test_spatial_attention_by_hand(map_order):
    # kernel 3 with only the centre tap: logit = w_first * first_map + w_second * second_map
    module = SpatialAttention(kernel_size=3, batch_norm=False, map_order=map_order)
    with torch.no_grad():
        module.conv.weight.zero_()
        module.conv.weight[0, 0, 1, 1] = 1.0
        module.conv.weight[0, 1, 1, 1] = 2.0
        module.conv.bias.zero_()
    x = torch.tensor([[[[1.0, -2.0, 0.5]], [[3.0, 0.0, -0.5]]]])  # (1, 2, 1, 3)
    maxes, means = [3.0, 0.0, 0.5], [2.0, -1.0, 0.0]
    first, second = (maxes, means) if map_order == "max-mean" else (means, maxes)
    gate = torch.tensor([sigmoid(a + 2 * b) for a, b in zip(first, second)]).view(1, 1, 1, 3)
    out, weights = module(x, return_attention=True)
    torch.testing.assert_close(weights["spatial"], gate)
    torch.testing.assert_close(out, x * gate)


def test_spatial_attention_batch_norm_in_eval_mode_by_hand():
    module = SpatialAttention(kernel_size=1).eval()
    with torch.no_grad():
        module.conv.weight.copy_(torch.tensor([1.0, 1.0]).view(1, 2, 1, 1))
        module.norm.running_mean.fill_(0.5)
        module.norm.running_var.fill_(4.0)
        module.norm.weight.fill_(3.0)
        module.norm.bias.fill_(-1.0)
    x = torch.tensor([[[[2.0]], [[0.0]]]])  # max 2, mean 1: conv gives 3
    expected = sigmoid(3.0 * (3.0 - 0.5) / math.sqrt(4.0 + 1e-5) - 1.0)
    _, weights = module(x, return_attention=True)
    assert weights["spatial"].item() == pytest.approx(expected, rel=1e-6)


def test_conv1x1_pooling_uses_a_learned_projection():
    module = SpatialAttention(kernel_size=3, pooling="conv1x1", channels=4, batch_norm=False)
    with torch.no_grad():
        module.squeeze.weight.copy_(torch.tensor([1.0, 0.0, 0.0, -1.0]).view(1, 4, 1, 1))
        module.squeeze.bias.zero_()
        module.conv.weight.zero_()
        module.conv.weight[0, 0, 1, 1] = 1.0
        module.conv.bias.zero_()
    x = torch.randn(2, 4, 5, 5)
    _, weights = module(x, return_attention=True)
    torch.testing.assert_close(weights["spatial"], torch.sigmoid(x[:, :1] - x[:, 3:]))


@pytest.mark.parametrize("arrangement", ["channel-spatial", "spatial-channel", "parallel"])
def test_cbam_arrangements_follow_their_definitions(arrangement):
    module = CBAM(16, reduction=4, arrangement=arrangement, fused=False).eval()
    cam, sam = module.channel_attention, module.spatial_attention
    x = torch.randn(2, 16, 6, 6)
    out, weights = module(x, return_attention=True)
    if arrangement == "channel-spatial":
        refined = cam(x)
        expected = sam(refined)
        torch.testing.assert_close(weights["channel"], cam.gate(cam.pool(x))[:, :, None, None])
    elif arrangement == "spatial-channel":
        expected = cam(sam(x))
        torch.testing.assert_close(weights["spatial"], sam.gate(sam.pool(x)))
    else:
        channel = cam.gate(cam.pool(x))[:, :, None, None]
        spatial = sam.gate(sam.pool(x))
        expected = x * channel * spatial
    torch.testing.assert_close(out, expected)
    assert weights["channel"].shape == (2, 16, 1, 1)
    assert weights["spatial"].shape == (2, 1, 6, 6)
    for w in weights.values():
        assert ((w > 0) & (w < 1)).all()


def test_kept_attention_needs_no_second_forward_pass():
    module = CBAM(16, reduction=4)
    module.keep_attention = True
    x = torch.randn(2, 16, 6, 6)
    out, weights = module(x, return_attention=True)
    assert set(module.last_attention) == {"channel", "spatial"}
    torch.testing.assert_close(module.last_attention["spatial"], weights["spatial"].detach())


def test_hidden_width_rounding():
    assert ChannelAttention(40, 16).mlp[0].out_features == 2  # floor(2.5), reference
    assert ChannelAttention(40, 16, hidden_rounding="nearest").mlp[0].out_features == 3  # timm
    assert ChannelAttention(64, 16, mlp_bias=False).mlp[0].bias is None
