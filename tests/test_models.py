"""Model shapes, parameter counts against the papers, and where attention sits."""
import pytest
import torch

from cbam_tutorial.attention import CBAM, ChannelAttention, SEBlock, SpatialAttention
from cbam_tutorial.cost import attention_overhead, count_parameters, model_cost
from cbam_tutorial.models import attention_modules, build_model


@pytest.mark.parametrize("name, blocks, millions", [("resnet20", 9, 0.27), ("resnet56", 27, 0.85),
                                                     ("resnet18", 8, 11.17)])
def test_cifar_models(name, blocks, millions):
    model = build_model(name, attention="cbam")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(attention_modules(model)) == blocks
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters
    assert round(count_parameters(build_model(name)) / 1e6, 2) == millions


def test_resnet50_parameters_match_the_paper():
    # Woo et al. (2018), Table 4: 25.56M, 28.09M, 28.09M
    counts = {a: count_parameters(build_model("resnet50", a, num_classes=1000)) for a in (None, "se", "cbam")}
    assert round(counts[None] / 1e6, 2) == 25.56
    assert round(counts["se"] / 1e6, 2) == 28.09
    assert round(counts["cbam"] / 1e6, 2) == 28.09


def test_resnet50_flop_overhead_is_the_papers():
    # The paper: 3.858 -> 3.860 (SE) -> 3.864 (CBAM) GFLOPs; its counter differs from
    # FlopCounterMode, so compare the overheads: +0.002 G and +0.006 G multiply-accumulates.
    rows = {r["attention"]: r for r in attention_overhead("resnet50")}
    se_delta = (rows["se"]["macs"] - rows["none"]["macs"]) / 1e9
    cbam_delta = (rows["cbam"]["macs"] - rows["none"]["macs"]) / 1e9
    assert se_delta == pytest.approx(0.002, abs=0.001)
    assert cbam_delta == pytest.approx(0.006, abs=0.001)


@pytest.mark.parametrize("attention, kind", [("se", SEBlock), ("cbam", CBAM), ("cam", ChannelAttention),
                                             ("sam", SpatialAttention)])
def test_attention_factory(attention, kind):
    options = {} if attention == "sam" else {"reduction": 4}
    model = build_model("resnet20", attention=attention, **options)
    assert all(type(m) is kind for m in attention_modules(model).values())


def test_attention_options_reach_the_modules():
    model = build_model("resnet20", "cbam", reduction=8, kernel_size=3, arrangement="parallel")
    module = attention_modules(model)["stages.2.0"]
    assert module.arrangement == "parallel" and module.spatial_attention.kernel_size == 3
    assert module.channel_attention.mlp[0].out_features == 64 // 8
    cam = attention_modules(build_model("resnet20", "cam", pooling="max"))["stages.0.0"]
    assert cam.pooling == "max"
    sam = attention_modules(build_model("resnet20", "sam", spatial_pooling="conv1x1"))["stages.0.0"]
    assert sam.pooling == "conv1x1" and sam.squeeze.in_channels == 16


@pytest.mark.parametrize("name, size", [("resnet20", 32), ("resnet50", 64)])
def test_attention_sits_after_the_last_batchnorm_before_the_addition(name, size):
    model = build_model(name, "cbam").eval()
    block = model.stages[1][0] if name == "resnet20" else model.layer2[0]
    last_bn = block.bn2 if name == "resnet20" else block.bn3[0]
    seen = {}
    # clones: torchvision's bottleneck adds the shortcut in place
    last_bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone()))
    block.attention.register_forward_hook(lambda m, i, o: seen.update(att_in=i[0].clone(), att_out=o.clone()))
    block.register_forward_hook(lambda m, i, o: seen.update(block_in=i[0], block_out=o))
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    torch.testing.assert_close(seen["att_in"], seen["bn"])
    shortcut = block.shortcut(seen["block_in"]) if name == "resnet20" else block.downsample(seen["block_in"])
    torch.testing.assert_close(seen["block_out"], torch.relu(seen["att_out"] + shortcut))


def test_cost_of_a_cifar_model():
    cost = model_cost(build_model("resnet20"))
    # ResNet-20: about 41M multiply-accumulates for one 32x32 image
    assert 40e6 < cost["macs"] < 42e6 and cost["flops"] == 2 * cost["macs"]
    rows = attention_overhead("resnet20")
    assert [r["attention"] for r in rows] == ["none", "se", "cbam"]
    assert rows[0]["parameter_overhead"] == 0
    assert 0 < rows[1]["parameter_overhead"] < rows[2]["parameter_overhead"] < 0.02
