"""The precomputed attention explorer: every stored view against the library's own
Grad-CAM, attention read-out and softmax, decoded back from the PNGs it stores."""
import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cbam_tutorial.attention_maps import extract_attention
from cbam_tutorial.book.map_explorer import MapExplorer, blocks_of, colormap_table, precompute_maps
from cbam_tutorial.data import CLASSES
from cbam_tutorial.gradcam import grad_cam
from cbam_tutorial.images import to_model_input
from cbam_tutorial.models import build_model


def decode(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))


@pytest.fixture(scope="module")
def views():
    torch.manual_seed(0)
    models = {"baseline": build_model("fastnet", None).eval(), "SE": build_model("fastnet", "se").eval(),
              "CBAM": build_model("fastnet", "cbam").eval()}
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9])
    return models, images, labels, precompute_maps(models, images, labels, CLASSES)


def test_every_view_is_what_the_library_computes(views):
    models, images, labels, maps = views
    assert maps["blocks"] == [{"name": "stages.0", "size": [16, 16]}, {"name": "stages.1", "size": [8, 8]}]
    assert [decode(png).tolist() for png in maps["images"]] == images.tolist()
    x = to_model_input(images)
    for label, model in models.items():
        result = maps["results"][label]
        with torch.no_grad():
            logits = model(x)
        probabilities = logits.softmax(1)[torch.arange(6), torch.as_tensor(labels)]
        assert result["p_true"] == [f"{float(p):.2f}" for p in probabilities]
        assert result["predicted"] == logits.argmax(1).tolist()
        attention = extract_attention(model, x) if label != "baseline" else {}
        for block in ("stages.0", "stages.1"):
            stored = result["blocks"][block]
            cam = grad_cam(model, x, target=torch.as_tensor(labels), layer=block)
            levels = np.stack([decode(png) for png in stored["gradcam"]])
            assert levels.shape == (6, 32, 32) and levels.dtype == np.uint8
            assert np.abs(levels - cam.maps.numpy() * 255).max() <= 0.5 + 1e-3  # rounded to the nearest level
            if label == "CBAM":
                spatial = np.stack([decode(png) for png in stored["spatial"]])
                expected = attention[block]["spatial"].numpy() * 255
                assert spatial.shape == expected.shape and np.abs(spatial - expected).max() <= 0.5 + 1e-3
            else:
                assert stored["spatial"] is None
            if label == "baseline":
                assert stored["channels"] is None
            else:
                weights = attention[block]["channel"]
                values, indices = weights.topk(10, dim=1)
                assert [[entry[0] for entry in row] for row in stored["channels"]] == indices.tolist()
                assert stored["channels"][2][0][2] == f"ch {int(indices[2, 0])}: {float(values[2, 0]):.2f}"
                assert stored["channel_count"] == weights.shape[1]


def test_colour_tables_are_matplotlibs():
    from matplotlib import colormaps

    table = colormap_table("inferno")
    assert len(table) == 256 and table[0] == [0, 0, 4] and table[-1] == [252, 255, 164]
    assert table[100] == [round(255 * c) for c in colormaps["inferno"](100)[:3]]


def test_page_holds_the_data_and_the_script(views):
    *_, maps = views
    explorer = MapExplorer(maps, image=3)
    page = explorer.html()
    data = re.search(r'<script type="application/json" id="[^"]+-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data) == maps
    assert "state = {image: 3," in page
    assert explorer.size() == len(page.encode())
    assert set(explorer._repr_mimebundle_()) == {"text/html", "text/plain"}


def test_bad_input_gets_clear_errors(views):
    models, images, labels, _ = views
    with pytest.raises(ValueError, match="uint8"):
        precompute_maps(models, images.astype(np.float32), labels, CLASSES)
    with pytest.raises(ValueError, match="one per image"):
        precompute_maps(models, images, labels[:3], CLASSES)
    with pytest.raises(ValueError, match="none of the models has attention"):
        blocks_of({"baseline": models["baseline"]})
