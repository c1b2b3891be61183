"""The widget apps driven as a reader would: set a value, trigger the callback, read the result."""
import pytest
import torch

from cbam_tutorial.cost import count_parameters
from cbam_tutorial.data import load_cifar10
from cbam_tutorial.gradcam import grad_cam
from cbam_tutorial.images import to_model_input
from cbam_tutorial.models import build_model
from cbam_tutorial.book.widgets import AblationLab, AttentionExplorer, ReductionExplorer, configuration_cost

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def cifar10():
    return load_cifar10()


def test_attention_explorer_follows_its_controls(cifar10):
    models = {"CBAM": build_model("resnet20", "cbam").eval(), "SE": build_model("resnet20", "se").eval(),
              "baseline": build_model("resnet20", None).eval()}
    images, labels = cifar10.test_images[:5], cifar10.test_labels[:5]
    app = AttentionExplorer(models, images, labels)
    assert list(app.block.options) == [f"stages.{s}.{b}" for s in range(3) for b in range(3)]
    app.image.value = 3
    # Grad-CAM of the true class at the chosen block's output
    expected = grad_cam(models["CBAM"], to_model_input(images[3:4]), target=int(labels[3]), layer=app.block.value)
    torch.testing.assert_close(app.result["gradcam"], expected.maps[0])
    assert app.result["target"] == int(labels[3])
    app.block.value = "stages.1.0"
    assert app.result["spatial"].shape == (16, 16) and app.result["channel"].shape == (32,)
    app.model.value = "SE"
    assert app.result["spatial"] is None and app.result["channel"].shape == (32,)
    figure = app.snapshot()  # what the Output area shows (outside a kernel it records nothing)
    assert len(figure.axes) == 4 and "SE, stages.1.0" in figure.axes[0].get_title()
    app.model.value = "baseline"  # no attention: Grad-CAM alone
    assert app.result["spatial"] is None and app.result["channel"] is None
    expected = grad_cam(models["baseline"], to_model_input(images[3:4]), target=int(labels[3]), layer="stages.1.0")
    torch.testing.assert_close(app.result["gradcam"], expected.maps[0])
    with pytest.raises(ValueError, match="none of the models has attention"):
        AttentionExplorer({"plain": build_model("resnet20", None)}, images, labels)


def test_ablation_lab_cost_updates_with_each_option():
    lab = AblationLab()
    lab.pooling.value = "avg"
    assert lab.result == configuration_cost(pooling="avg", kernel_size=7, arrangement="channel-spatial", reduction=16)
    lab.kernel_size.value = 3
    lab.reduction.value = 4
    plain = count_parameters(build_model("resnet20", None))
    expected = count_parameters(build_model("resnet20", "cbam", channel_pooling="avg", kernel_size=3, reduction=4))
    assert lab.result["extra_parameters"] == expected - plain
    assert f"{expected:,} parameters" in lab.cost_label.value


def test_ablation_lab_trains_and_stops_on_request(cifar10):
    lab = AblationLab(data=cifar10, profile="quick", epochs=3, train_subset=1024, val_subset=1000,
                      test_subset=1000)
    original = lab._on_epoch

    def stop_after_first(record):  # press Stop while the first epoch finishes
        lab.stop_button.click()
        return original(record)

    lab._on_epoch = stop_after_first
    lab.start_button.click()
    assert lab.start_button.disabled
    lab.thread.join(timeout=300)
    assert lab.training_error is None
    assert lab.training_result.stopped_early and len(lab.history) == 1
    assert "stopped after 1 epoch" in lab.status.value
    assert not lab.start_button.disabled and lab.stop_button.disabled


def test_reduction_explorer_matches_a_hand_count():
    app = ReductionExplorer()
    app.reduction.value = 4
    # ResNet-50 bottleneck outputs: 3 x 256, 4 x 512, 6 x 1024, 3 x 2048 channels; per block
    # the shared MLP C -> C/r -> C with biases, a 7x7 conv 2 -> 1 without bias and a BatchNorm(1)
    by_hand = sum(n * (2 * c * (c // 4) + c // 4 + c + 2 * 49 + 2)
                  for n, c in ((3, 256), (4, 512), (6, 1024), (3, 2048)))
    assert app.result["attention_parameters"] == by_hand
    assert f"{by_hand:,}" in app.label.value
    assert app.table[16]["attention_parameters"] < by_hand


def test_an_app_is_shown_once_as_widget_and_picture_in_one_output(monkeypatch):
    """show_app displays one bundle: notebooks render its widget view, the site its PNG."""
    import base64

    from cbam_tutorial.book import links

    app = ReductionExplorer()
    bundle = links.app_bundle(app)
    assert bundle[links.WIDGET_VIEW]["model_id"] == app.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **kwargs: shown.append((objects, kwargs)))
    monkeypatch.setattr(links, "colab_url", lambda notebook: f"https://colab.example/{notebook}")
    links.show_app(app, "chapters/04_cbam_block.ipynb")
    (first, options), (second, _) = shown
    assert options == {"raw": True} and set(first[0]) == {links.WIDGET_VIEW, "image/png", "text/plain"}
    assert "https://colab.example/chapters/04_cbam_block.ipynb" in second[0].data


def test_an_app_with_a_site_view_gives_the_site_that_view_instead_of_a_picture(monkeypatch):
    """On the site a precomputed explorer replaces the picture: the bundle holds the widget
    for notebooks and the explorer's HTML for the site, and no PNG (no duplicate figure)."""
    from cbam_tutorial.book import links

    class SiteView:
        def html(self):
            return "<div class='explorer'>runs in the page</div>"

    app = ReductionExplorer()
    bundle = links.app_bundle(app, site_view=SiteView())
    assert set(bundle) == {links.WIDGET_VIEW, "text/html", "text/plain"}
    assert bundle["text/html"] == SiteView().html()
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **kwargs: shown.append((objects, kwargs)))
    monkeypatch.setattr(links, "colab_url", lambda notebook: f"https://colab.example/{notebook}")
    links.show_app(app, "chapters/09_gradcam_and_attention_maps.ipynb", site_view=SiteView())
    (first, _), (second, _) = shown
    assert "image/png" not in first[0] and "this explorer runs in the page" in second[0].data
