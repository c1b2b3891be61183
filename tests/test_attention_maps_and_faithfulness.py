"""Attention extraction against direct module calls; deletion/insertion curves by hand."""
import pytest
import torch
from torch import nn

from cbam_tutorial.attention_maps import extract_attention
from cbam_tutorial.faithfulness import blurred, curve_area, random_maps, saliency_curves
from cbam_tutorial.models import attention_modules, build_model


@pytest.mark.parametrize("attention", ["cbam", "se", "sam"])
def test_extract_attention_matches_each_module(attention):
    model = build_model("resnet20", attention).eval()
    images = torch.randn(3, 3, 32, 32)
    inputs = {}
    modules = attention_modules(model)
    handles = [m.register_forward_hook(lambda m, args, out, n=name: inputs.__setitem__(n, args[0]))
               for name, m in modules.items()]
    maps = extract_attention(model, images)
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    assert list(maps) == list(modules) and len(maps) == 9
    for name, module in modules.items():
        with torch.no_grad():
            _, weights = module(inputs[name], return_attention=True)
        if attention in ("cbam", "se"):
            torch.testing.assert_close(maps[name]["channel"], weights["channel"].flatten(1))
            assert maps[name]["channel"].shape == (3, inputs[name].shape[1])
        if attention in ("cbam", "sam"):
            torch.testing.assert_close(maps[name]["spatial"], weights["spatial"][:, 0])
            assert maps[name]["spatial"].shape == (3, *inputs[name].shape[2:])
        assert module.keep_attention is False and module.last_attention is None


def test_extract_attention_needs_attention():
    with pytest.raises(ValueError, match="no attention modules"):
        extract_attention(build_model("resnet20", None), torch.randn(1, 3, 32, 32))


class PixelSum(nn.Module):
    """Two logits: 0 and the sum of channel 0 over the top-left 2x2 pixels of a 4x4 image."""

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), x[:, 0, :2, :2].sum(dim=(1, 2))], dim=1)


def test_deletion_curve_by_hand():
    images = torch.ones(1, 3, 4, 4)
    saliency = torch.arange(16.0).flip(0).view(1, 4, 4)  # row-major order, pixel (0, 0) first
    curve = saliency_curves(PixelSum(), images, saliency, torch.tensor([1]), "deletion", steps=4)
    # steps delete 4 pixels each: row 0 (two evidence pixels), then row 1 (the other two)
    sigmoid = torch.sigmoid(torch.tensor([4.0, 2.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(curve[0], sigmoid)
    torch.testing.assert_close(curve_area(curve), torch.trapezoid(sigmoid, dx=0.25)[None])


def test_insertion_curve_ends_at_the_image_and_starts_blurred():
    model = build_model("resnet20", None).eval()
    images = torch.randn(2, 3, 32, 32)
    targets = torch.tensor([1, 7])
    curve = saliency_curves(model, images, random_maps(images), targets, "insertion", steps=8)
    with torch.no_grad():
        end = model(images).softmax(1).gather(1, targets[:, None])[:, 0]
        start = model(blurred(images)).softmax(1).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(curve[:, -1], end)
    torch.testing.assert_close(curve[:, 0], start)


def test_faithful_map_beats_random_on_deletion():
    from cbam_test_models import QuadrantNet
    from cbam_tutorial.gradcam import grad_cam

    model = QuadrantNet()
    images = torch.rand(8, 3, 16, 16) + 0.1
    targets = torch.ones(8, dtype=torch.long)
    maps = grad_cam(model, images, target=targets, layer="features").maps
    explained = curve_area(saliency_curves(model, images, maps, targets, steps=16))
    random = curve_area(saliency_curves(model, images, random_maps(images, seed=3), targets, steps=16))
    assert torch.all(explained < random)


def test_curve_errors():
    images = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="deletion"):
        saliency_curves(PixelSum(), images, torch.rand(2, 8, 8), torch.tensor([0, 1]), mode="erase")
    with pytest.raises(ValueError, match="must have shape \\(2, 8, 8\\)"):
        saliency_curves(PixelSum(), images, torch.rand(2, 4, 4), torch.tensor([0, 1]))


def test_coarse_random_maps_have_the_structure_of_the_layer():
    images = torch.zeros(2, 3, 32, 32)
    fine, coarse = random_maps(images, seed=1), random_maps(images, seed=1, resolution=8)
    assert fine.shape == coarse.shape == (2, 32, 32)
    # neighbouring pixels of an upsampled 8x8 map are far more alike than independent draws
    step = lambda m: (m[:, :, 1:] - m[:, :, :-1]).abs().mean()  # noqa: E731
    assert step(coarse) < 0.3 * step(fine)


def test_stratified_indices():
    from cbam_tutorial.data import stratified_indices

    labels = torch.arange(10).repeat_interleave(20).numpy()  # stored class by class
    picked = stratified_indices(labels, per_class=3, seed=0)
    assert list(labels[picked]) == list(range(10)) * 3 and len(set(picked)) == 30
    with pytest.raises(ValueError, match="fewer than per_class"):
        stratified_indices(labels, per_class=21)
