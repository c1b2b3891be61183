"""Grad-CAM against the grad-cam library, on a network whose evidence is known, and its errors."""
import numpy as np
import pytest
import torch
from torch import nn

from cbam_test_models import QuadrantNet
from cbam_tutorial.gradcam import default_layer, grad_cam
from cbam_tutorial.models import build_model

library = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is not the identity."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
    return model.eval()


def library_cam(model, layer_name, images, targets):
    layer = dict(model.named_modules())[layer_name]
    with library.GradCAM(model=model, target_layers=[layer]) as cam:
        chosen = None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]
        return cam(input_tensor=images, targets=chosen)


@pytest.mark.parametrize("attention", [None, "se", "cbam"])
@pytest.mark.parametrize("layer", ["stages.2", "stages.1.2", "stages.2.0.conv1"])
def test_equals_pytorch_grad_cam(attention, layer):
    model = randomised(build_model("resnet20", attention))
    images = torch.randn(6, 3, 32, 32)
    targets = torch.tensor([0, 3, 9, 1, 1, 5])
    ours = grad_cam(model, images, target=targets, layer=layer)
    theirs = library_cam(model, layer, images, targets)
    assert ours.maps.shape == (6, 32, 32)
    assert ours.maps.max() > 0.99  # not degenerate
    np.testing.assert_allclose(ours.maps.numpy(), theirs, atol=2e-4)


def test_predicted_class_by_default_matches_library():
    model = randomised(build_model("resnet20", "cbam"))
    images = torch.randn(4, 3, 32, 32)
    ours = grad_cam(model, images)
    assert torch.equal(ours.targets, model(images).argmax(1))
    np.testing.assert_allclose(ours.maps.numpy(), library_cam(model, "stages.2", images, None), atol=2e-4)
    probabilities = model(images).softmax(1).gather(1, ours.targets[:, None])[:, 0]
    torch.testing.assert_close(ours.probabilities, probabilities.detach())


def test_known_evidence_lights_up_its_quadrant():
    model = QuadrantNet()
    images = torch.rand(3, 3, 16, 16) + 0.1  # positive brightness everywhere
    top_left = grad_cam(model, images, target=1, layer="features").maps
    bottom_right = grad_cam(model, images, target=0, layer="features").maps
    for maps, rows, columns in ((top_left, slice(0, 8), slice(0, 8)), (bottom_right, slice(8, 16), slice(8, 16))):
        inside = maps[:, rows, columns].sum(dim=(1, 2))
        assert torch.all(inside / maps.sum(dim=(1, 2)) > 0.97)  # bilinear upsampling blurs one edge row
        assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(3))


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_hooks_removed_after_use_and_after_errors():
    model = build_model("resnet20", "cbam")
    model.train()
    grad_cam(model, torch.randn(2, 3, 32, 32))
    assert hook_count(model) == 0
    assert model.training  # mode restored
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        grad_cam(model, torch.randn(2, 3, 32, 32), target=10)
    assert hook_count(model) == 0
    with pytest.raises((RuntimeError, ValueError)):
        grad_cam(model, torch.randn(2, 5, 32, 32))  # the model itself fails in its forward pass
    assert hook_count(model) == 0


def test_bad_layer_and_targets_get_clear_errors():
    model = build_model("resnet20", "cbam")
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="did you mean 'stages.2'"):
        grad_cam(model, images, layer="stage.2")
    with pytest.raises(ValueError, match="needs a \\(B, K, h, w\\) feature map"):
        grad_cam(model, images, layer="head")
    with pytest.raises(ValueError, match="one per image \\(2\\)"):
        grad_cam(model, images, target=[1, 2, 3])
    with pytest.raises(ValueError, match="class index"):
        grad_cam(model, images, target=1.5)
    with pytest.raises(ValueError, match="\\(B, 3, H, W\\)"):
        grad_cam(model, images[0])
    assert default_layer(model) == "stages.2"
    assert default_layer(build_model("resnet50", "cbam", num_classes=10)) == "layer4"
