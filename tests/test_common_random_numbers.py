"""Common random numbers: for one seed, every attention configuration starts from the same
backbone weights, its attention drawn from a generator of its own, and sees the same batches."""
import pytest
import torch

from cbam_tutorial.loader import TensorLoader
from cbam_tutorial.models import attention_modules
from cbam_tutorial.train import initial_model

CONFIGURATIONS = [(None, {}), ("se", {}), ("cbam", {}), ("cbam", {"kernel_size": 3}),
                  ("cbam", {"arrangement": "parallel"}), ("cam", {"pooling": "max"}), ("sam", {})]


def backbone(model):
    return {k: v for k, v in model.state_dict().items() if ".attention." not in f".{k}"}


@pytest.mark.parametrize("name", ["resnet20", "fastnet"])
def test_backbone_is_the_same_for_every_configuration_of_a_seed(name):
    for seed in (0, 1):
        reference = backbone(initial_model(name, None, seed))
        for attention, options in CONFIGURATIONS[1:]:
            model = initial_model(name, attention, seed, attention_options=options)
            state = backbone(model)
            assert state.keys() == reference.keys()
            for key in reference:
                torch.testing.assert_close(state[key], reference[key], rtol=0, atol=0, msg=key)
            assert attention_modules(model)
    first, second = backbone(initial_model(name, None, 0)), backbone(initial_model(name, None, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)  # seeds differ


def test_attention_parameters_come_from_their_own_generator():
    a = initial_model("resnet20", "cbam", 0)
    b = initial_model("resnet20", "cbam", 0, attention_options={"kernel_size": 7})
    c = initial_model("resnet20", "cbam", 1)
    mlp = "stages.0.0.attention.channel_attention.mlp.0.weight"
    torch.testing.assert_close(a.state_dict()[mlp], b.state_dict()[mlp], rtol=0, atol=0)
    assert not torch.equal(a.state_dict()[mlp], c.state_dict()[mlp])
    # every configuration leaves the global generator where the backbone alone leaves it
    torch.manual_seed(5)
    initial_model("resnet20", "cbam", 0)
    after_cbam = torch.rand(1)
    torch.manual_seed(5)
    initial_model("resnet20", None, 0)
    assert torch.equal(torch.rand(1), after_cbam)


def test_batches_depend_only_on_the_seed_and_epoch():
    images = torch.randint(0, 255, (64, 8, 8, 3), dtype=torch.uint8)
    labels = torch.arange(64) % 10
    one = TensorLoader(images, labels, 16, True, seed=3, padding=2, pad_mode="reflect", flip="alternating")
    two = TensorLoader(images, labels, 16, True, seed=3, padding=2, pad_mode="reflect", flip="alternating")
    torch.rand(7)  # the global generator does not matter
    for (x1, y1), (x2, y2) in zip(one.epoch(2), two.epoch(2)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
