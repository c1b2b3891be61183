"""An attention explorer for the book's web page: maps computed when the book is built,
interaction in the reader's browser, no kernel.

    maps = precompute_maps({"baseline": b, "SE": s, "CBAM": c}, images, labels)
    MapExplorer(maps)            # in a notebook: HTML that shows the explorer

For a fixed set of test images and a few trained models, `precompute_maps` runs each model
once per block and keeps what the live explorer (widgets.AttentionExplorer) would show:
P(true class) and the predicted class, the Grad-CAM map of the true class at the block's
output, and where the block has attention, its spatial gate and its largest channel
weights. Numbers are formatted here, so the page shows exactly what Python printed. Maps
are stored as 8-bit grayscale PNGs (Grad-CAM at the image's 32 x 32, as
gradcam.grad_cam returns it; the spatial gate at its own resolution); the page colours
them with the book's colour maps (inferno for Grad-CAM, viridis for the gate, both on
[0, 1]) and draws them on canvases. A small script, written here, does the choosing.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from itertools import count

import numpy as np
import torch
from torch import nn

from ..attention_maps import extract_attention
from ..gradcam import grad_cam
from ..images import to_model_input
from ..models import attention_modules

TOP_CHANNELS = 10
_ids = count()


def _png(array: np.ndarray) -> str:
    """(H, W) or (H, W, 3) uint8 -> a base64 PNG (no colour profile: the browser draws the values as they are)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_levels(maps: torch.Tensor) -> np.ndarray:
    """Maps in [0, 1], any shape -> uint8 levels 0..255 (rounded), as stored."""
    return (maps.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def colormap_table(name: str) -> list[list[int]]:
    """The matplotlib colour map `name` as 256 [r, g, b] entries (0..255): level i -> colour."""
    from matplotlib import colormaps

    return (np.asarray(colormaps[name](np.arange(256))[:, :3]) * 255).round().astype(int).tolist()


def blocks_of(models: dict[str, nn.Module]) -> list[str]:
    """The blocks to explore: those of the first model with attention (e.g. stages.0, stages.1),
    which every model must have as layers."""
    for model in models.values():
        names = list(attention_modules(model))
        if names:
            return names
    raise ValueError("none of the models has attention blocks; include e.g. the CBAM model")


@torch.no_grad()
def _channel_tops(weights: torch.Tensor, k: int) -> list[list[list]]:
    """(N, C) channel weights -> for each image, the k largest as [[channel, weight, label], ...]."""
    values, indices = weights.float().topk(min(k, weights.shape[1]), dim=1)
    return [[[int(i), round(float(v), 3), f"ch {int(i)}: {float(v):.2f}"] for i, v in zip(row_i, row_v)]
            for row_i, row_v in zip(indices, values)]


def precompute_maps(models: dict[str, nn.Module], images, labels, classes, blocks: list[str] | None = None) -> dict:
    """Everything the explorer shows, for every (image, model, block), as JSON-ready data.

    Args:
        models: {label: trained model}, e.g. the book's reference baseline, SE and CBAM.
        images: (N, 32, 32, 3) uint8 test images; labels: (N,) their true classes.
        classes: the class names.
        blocks: layer names (default: blocks_of(models)); Grad-CAM explains each block's output.
    """
    images = np.asarray(images)
    labels = torch.as_tensor(np.asarray(labels)).long()
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), one per image, got {tuple(labels.shape)}")
    blocks = blocks or blocks_of(models)
    x = to_model_input(images)
    data = {"classes": list(classes), "models": list(models), "blocks": [], "labels": labels.tolist(),
            "images": [_png(image) for image in images], "top_channels": TOP_CHANNELS, "results": {},
            "colormaps": {"gradcam": colormap_table("inferno"), "spatial": colormap_table("viridis")}}
    for label, model in models.items():
        model = model.cpu().eval()
        attention = extract_attention(model, x) if attention_modules(model) else {}
        result = {"blocks": {}}
        for block in blocks:
            cam = grad_cam(model, x, target=labels, layer=block)
            gates = attention.get(block, {})
            spatial = gates.get("spatial")
            channel = gates.get("channel")
            result["blocks"][block] = {
                "gradcam": [_png(m) for m in to_levels(cam.maps)],
                "spatial": None if spatial is None else [_png(m) for m in to_levels(spatial)],
                "spatial_size": None if spatial is None else list(spatial.shape[-2:]),
                "channels": None if channel is None else _channel_tops(channel, TOP_CHANNELS),
                "channel_count": None if channel is None else int(channel.shape[1]),
            }
            if label == next(iter(models)):
                data["blocks"].append({"name": block, "size": list(cam.layer_size)})
        # the logits do not depend on the block explained: read them from the last one
        result["p_true"] = [f"{float(p):.2f}" for p in cam.probabilities]
        result["predicted"] = cam.logits.argmax(1).tolist()
        data["results"][label] = result
    return data


_STYLE = """
.cbam-map-explorer{font-size:0.9em;margin:0.5em 0 1em}
.cbam-map-explorer .cbam-thumbs{display:grid;grid-template-columns:repeat(10,36px);gap:3px;margin-bottom:0.6em}
.cbam-map-explorer .cbam-thumbs img{width:32px;height:32px;image-rendering:pixelated;cursor:pointer;
  border:2px solid transparent}
.cbam-map-explorer .cbam-thumbs img[aria-pressed=true]{border-color:#c44e52}
.cbam-map-explorer fieldset{display:inline-block;border:none;margin:0 1.5em 0.4em 0;padding:0}
.cbam-map-explorer legend{font-weight:600;padding:0;float:left;margin-right:0.5em}
.cbam-map-explorer label{margin-right:0.8em}
.cbam-map-explorer .cbam-panels{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;margin-top:0.4em}
.cbam-map-explorer figure{margin:0;text-align:center}
.cbam-map-explorer figcaption{font-size:0.85em;max-width:150px}
.cbam-map-explorer .cbam-square{position:relative;width:128px;height:128px;background:#eee}
.cbam-map-explorer .cbam-square img,.cbam-map-explorer .cbam-square canvas{position:absolute;left:0;top:0;
  width:128px;height:128px;image-rendering:pixelated}
.cbam-map-explorer canvas[data-role=gradcam]{opacity:0.55;image-rendering:auto}
.cbam-map-explorer .cbam-none{position:absolute;left:0;top:50px;width:128px;color:#666}
.cbam-map-explorer ol{list-style:none;padding:0;margin:0;min-width:170px}
.cbam-map-explorer li{display:flex;align-items:center;gap:4px;height:12px;font-size:10px;margin-bottom:1px}
.cbam-map-explorer li span.bar{display:inline-block;height:9px;background:#4c72b0}
"""

# Draws the current choice; every element the tests read carries a data-role.
_SCRIPT = """(function () {
  var root = document.getElementById(%(id)s);
  var data = JSON.parse(document.getElementById(%(id)s + "-data").textContent);
  var state = {image: %(image)d, model: data.models[data.models.length - 1], block: data.blocks[data.blocks.length - 1].name};
  function el(role) { return root.querySelector("[data-role=" + role + "]"); }
  function png(b64) { return "data:image/png;base64," + b64; }
  function paint(canvas, b64, table) {
    var picture = new Image();
    picture.onload = function () {
      canvas.width = picture.naturalWidth; canvas.height = picture.naturalHeight;
      var context = canvas.getContext("2d", {willReadFrequently: true});
      context.drawImage(picture, 0, 0);
      var pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      for (var i = 0; i < pixels.data.length; i += 4) {
        var colour = table[pixels.data[i]];
        pixels.data[i] = colour[0]; pixels.data[i + 1] = colour[1]; pixels.data[i + 2] = colour[2];
        pixels.data[i + 3] = 255;
      }
      context.putImageData(pixels, 0, 0);
      canvas.setAttribute("data-drawn", canvas.getAttribute("data-key"));
    };
    picture.src = png(b64);
  }
  function draw() {
    var result = data.results[state.model], block = result.blocks[state.block], i = state.image;
    var key = [i, state.model, state.block].join("|");
    root.setAttribute("data-state", key);
    root.querySelectorAll(".cbam-thumbs img").forEach(function (thumb, j) {
      thumb.setAttribute("aria-pressed", j === i ? "true" : "false");
    });
    root.querySelectorAll("[data-role=picture]").forEach(function (img) { img.src = png(data.images[i]); });
    var truth = data.classes[data.labels[i]], predicted = data.classes[result.predicted[i]];
    el("probability").textContent = "P(" + truth + ") = " + result.p_true[i];
    el("prediction").textContent = "true class: " + truth + "; " + state.model + " predicts " + predicted;
    var gradcam = el("gradcam");
    gradcam.setAttribute("data-key", key);
    paint(gradcam, block.gradcam[i], data.colormaps.gradcam);
    var spatial = el("spatial");
    spatial.setAttribute("data-key", key);
    spatial.style.display = block.spatial ? "" : "none";
    el("no-spatial").style.display = block.spatial ? "none" : "";
    if (block.spatial) { paint(spatial, block.spatial[i], data.colormaps.spatial); }
    el("spatial-caption").textContent = block.spatial
      ? "spatial gate, " + block.spatial_size.join(" x ") : "spatial gate";
    var list = el("channels");
    list.textContent = "";
    el("channels-caption").textContent = block.channels
      ? "largest channel weights (of " + block.channel_count + ")" : "no channel attention";
    (block.channels ? block.channels[i] : []).forEach(function (entry) {
      var item = document.createElement("li");
      item.setAttribute("data-role", "channel");
      var name = document.createElement("span");
      name.textContent = entry[2];
      name.style.minWidth = "70px";
      var bar = document.createElement("span");
      bar.className = "bar"; bar.style.width = Math.round(100 * entry[1]) + "px";
      item.appendChild(name); item.appendChild(bar); list.appendChild(item);
    });
  }
  var thumbs = root.querySelector(".cbam-thumbs");
  data.images.forEach(function (b64, j) {
    var thumb = document.createElement("img");
    thumb.src = png(b64);
    thumb.alt = "test image " + (j + 1) + ": " + data.classes[data.labels[j]];
    thumb.title = thumb.alt;
    thumb.setAttribute("role", "button");
    thumb.setAttribute("data-index", j);
    thumb.addEventListener("click", function () { state.image = j; draw(); });
    thumbs.appendChild(thumb);
  });
  function radios(role, names, labelOf, current, set) {
    var group = el(role);
    names.forEach(function (name) {
      var label = document.createElement("label"), input = document.createElement("input");
      input.type = "radio"; input.name = %(id)s + "-" + role; input.value = name;
      input.checked = name === current;
      input.addEventListener("change", function () { set(name); draw(); });
      label.appendChild(input); label.appendChild(document.createTextNode(" " + labelOf(name)));
      group.appendChild(label);
    });
  }
  radios("models", data.models, function (m) { return m; }, state.model, function (m) { state.model = m; });
  radios("blocks", data.blocks.map(function (b) { return b.name; }), function (name) {
    var size = data.blocks.filter(function (b) { return b.name === name; })[0].size;
    return name + " (" + size.join(" x ") + ")";
  }, state.block, function (b) { state.block = b; });
  draw();
  root.setAttribute("data-ready", "true");
})();"""


@dataclass
class MapExplorer:
    """The static explorer of precompute_maps() data; `image` is the one shown first."""

    maps: dict
    image: int = 0
    title: str = "attention explorer"

    def html(self) -> str:
        element = f"cbam-map-explorer-{next(_ids)}"
        payload = json.dumps(self.maps, separators=(",", ":")).replace("</", "<\\/")
        script = _SCRIPT % {"id": json.dumps(element), "image": self.image}
        return (f"<style>{_STYLE}</style>\n"
                f'<div class="cbam-map-explorer" id="{element}" aria-label="{html.escape(self.title)}">'
                '<div class="cbam-thumbs" aria-label="test images"></div>'
                '<fieldset data-role="models"><legend>model</legend></fieldset>'
                '<fieldset data-role="blocks"><legend>block</legend></fieldset>'
                '<div data-role="prediction"></div>'
                '<div class="cbam-panels">'
                '<figure><div class="cbam-square"><img data-role="picture" alt="the chosen test image"></div>'
                '<figcaption data-role="probability"></figcaption></figure>'
                '<figure><div class="cbam-square"><img data-role="picture" alt="">'
                '<canvas data-role="gradcam"></canvas></div>'
                "<figcaption>Grad-CAM of the true class at the block's output</figcaption></figure>"
                '<figure><div class="cbam-square"><canvas data-role="spatial"></canvas>'
                '<span class="cbam-none" data-role="no-spatial">no spatial gate</span></div>'
                '<figcaption data-role="spatial-caption"></figcaption></figure>'
                '<figure><ol data-role="channels"></ol><figcaption data-role="channels-caption"></figcaption>'
                "</figure></div></div>\n"
                f'<script type="application/json" id="{element}-data">{payload}</script>\n'
                f"<script>{script}</script>")

    def size(self) -> int:
        """Bytes this explorer adds to a page (its HTML, data and script)."""
        return len(self.html().encode())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self.html(), "text/plain": f"{self.title} (an HTML page element)"}
