"""The explorers of the built site, driven by clicks in Chromium, checked against numbers
and maps computed here, independently of the code that made the pages:

- the grid explorers of chapters 6-8 against the committed results file, with the paired
  differences and t-intervals computed by hand (scipy's t quantile);
- chapter 9's attention explorer against the reference models run here (Grad-CAM,
  spatial gate, channel weights, P(true class)), coloured with matplotlib's colour maps.

Each check also asserts that the page fetched nothing from outside the site and logged
no console error. The bytes each explorer page transfers on load are written to
SCREENSHOTS/page-weights.json.
"""
import base64
import io
import json
import math
import re
import statistics

import numpy as np
import pytest

from browsing import ROOT, SCREENSHOTS, needs_site, open_page

pytestmark = needs_site

ABLATION_CHAPTERS = {"06_ablation_channel_pooling": "pooling", "07_ablation_spatial_attention": "spatial",
                     "08_ablation_arrangement": "arrangement"}
RESULTS = ROOT / "results" / "ablation-all-gpu.jsonl"  # what chapters 6-8 read


def t975(degrees_of_freedom: int) -> float:
    stats = pytest.importorskip("scipy.stats")
    return float(stats.t.ppf(0.975, degrees_of_freedom))


def scores_by_configuration(metric: str = "val") -> dict:
    scores = {}
    for line in RESULTS.read_text().splitlines():
        record = json.loads(line)
        scores.setdefault(record["configuration"]["name"], {})[record["seed"]] = 100 * record[metric]["accuracy"]
    return scores


def expected_difference_labels(scores: dict, names: list, reference: str) -> set:
    labels = set()
    for name in names:
        if name == reference:
            continue
        seeds = sorted(set(scores[name]) & set(scores[reference]))
        differences = [scores[name][s] - scores[reference][s] for s in seeds]
        mean = statistics.fmean(differences)
        half = t975(len(seeds) - 1) * statistics.stdev(differences) / math.sqrt(len(seeds))
        labels.add(f"{mean:+.2f} ({mean - half:+.2f} to {mean + half:+.2f})")
    return labels


def expected_accuracy_labels(scores: dict, names: list) -> set:
    labels = set()
    for name in names:
        values = list(scores[name].values())
        mean = statistics.fmean(values)
        half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        labels.add(f"{mean:.2f} ({mean - half:.2f} to {mean + half:.2f})")
    return labels


def shown_labels(page) -> tuple[set, set]:
    """(accuracy labels, difference labels) that the explorer's charts show now."""
    texts = page.evaluate("""() => [...document.querySelectorAll('.cbam-grid-explorer-chart svg text')]
        .map(t => t.textContent)""")
    intervals = [t for t in texts if re.fullmatch(r"[+-]?\d+\.\d\d \([+-]?\d+\.\d\d to [+-]?\d+\.\d\d\)", t)]
    return ({t for t in intervals if t[0] not in "+-"}, {t for t in intervals if t[0] in "+-"})


def wait_for(page, condition: str, timeout: int = 10_000) -> None:
    page.wait_for_function(condition, timeout=timeout)


@pytest.mark.parametrize("chapter", sorted(ABLATION_CHAPTERS))
def test_grid_explorer_shows_the_results_file(browser, server, chapter):
    from cbam_tutorial.grids import GRIDS, PAPER_REFERENCE_ROWS

    grid = ABLATION_CHAPTERS[chapter]
    scores = scores_by_configuration()
    reference = PAPER_REFERENCE_ROWS[grid]
    names = [c.name for c in GRIDS[grid] if c.name in scores]
    if reference not in names:
        names.append(reference)
    page, problems, outside = open_page(browser, f"{server}/chapters/{chapter}.html")
    try:
        wait_for(page, "document.querySelector('.cbam-grid-explorer-chart[data-ready=true]') !== null")
        accuracy, differences = shown_labels(page)
        assert accuracy == expected_accuracy_labels(scores, names)
        assert differences == expected_difference_labels(scores, names, reference)

        # compare with the baseline instead
        page.select_option(".cbam-grid-explorer-controls select", "baseline")
        wait_for(page, "[...document.querySelectorAll('.cbam-grid-explorer-chart svg text')]"
                       ".some(t => t.textContent.startsWith('+') || t.textContent.startsWith('-'))")
        page.wait_for_timeout(300)
        _, differences = shown_labels(page)
        assert differences == expected_difference_labels(scores, names, "baseline")

        # hide one configuration: its numbers leave both charts
        hidden = next(name for name in names if name not in ("baseline", reference))
        exactly = re.compile(rf"^\s*{re.escape(hidden)}\s*$")  # "se" must not match "baseline"
        page.locator(".cbam-grid-explorer-controls .vega-bind").filter(
            has=page.locator(".vega-bind-name", has_text=exactly)).locator("input").first.uncheck()
        page.wait_for_timeout(300)
        accuracy, differences = shown_labels(page)
        kept = [n for n in names if n != hidden]
        assert accuracy == expected_accuracy_labels(scores, kept)
        assert differences == expected_difference_labels(scores, kept, "baseline")
        assert not outside, f"{chapter} fetches from outside the site: {outside[:5]}"
        assert not problems, f"{chapter}: {problems[:5]}"
    finally:
        page.close()


@pytest.fixture(scope="module")
def reference_views():
    """The reference models and the explorer's 50 test images, as chapter 9 chooses them."""
    from cbam_tutorial.book.reference import reference_model
    from cbam_tutorial.data import load_cifar10, stratified_indices

    data = load_cifar10()
    shown = stratified_indices(data.test_labels, per_class=5, seed=2)
    models = {label: reference_model(attention).model for label, attention in
              (("baseline", None), ("SE", "se"), ("CBAM", "cbam"))}
    return models, data.test_images[shown], data.test_labels[shown]


def colour(levels: np.ndarray, name: str) -> np.ndarray:
    from matplotlib import colormaps

    return np.round(colormaps[name](levels)[..., :3] * 255)


def canvas_rgb(page, role: str) -> np.ndarray:
    width, height, pixels = page.evaluate(f"""() => {{
        const canvas = document.querySelector('.cbam-map-explorer canvas[data-role={role}]');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        return [canvas.width, canvas.height, Array.from(data)];
    }}""")
    return np.asarray(pixels, dtype=float).reshape(height, width, 4)[..., :3]


def choose(page, image: int, model: str, block: str) -> None:
    page.click(f".cbam-map-explorer .cbam-thumbs img[data-index='{image}']")
    page.check(f".cbam-map-explorer input[type=radio][value='{model}']")
    page.check(f".cbam-map-explorer input[type=radio][value='{block}']")
    key = f"{image}|{model}|{block}"
    wait_for(page, f"document.querySelector('.cbam-map-explorer canvas[data-role=gradcam]')"
                   f".getAttribute('data-drawn') === '{key}'")


@pytest.mark.parametrize("image, model, block", [(12, "SE", "stages.0"), (31, "CBAM", "stages.1"),
                                                 (4, "baseline", "stages.1")])
def test_attention_explorer_shows_the_reference_models(browser, server, reference_views, image, model, block):
    import torch
    from PIL import Image

    from cbam_tutorial.attention_maps import extract_attention
    from cbam_tutorial.data import CLASSES
    from cbam_tutorial.gradcam import grad_cam
    from cbam_tutorial.images import to_model_input

    models, images, labels = reference_views
    x, label = to_model_input(images[image:image + 1]), int(labels[image])
    cam = grad_cam(models[model], x, target=label, layer=block)
    page, problems, outside = open_page(browser, f"{server}/chapters/09_gradcam_and_attention_maps.html")
    try:
        wait_for(page, "document.querySelector('.cbam-map-explorer[data-ready=true]') !== null")
        choose(page, image, model, block)
        # the picture is the test image itself
        source = page.get_attribute(".cbam-map-explorer img[data-role=picture]", "src")
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB"))
        np.testing.assert_array_equal(shown, images[image])
        probability = float(cam.logits.softmax(1)[0, label])
        assert page.text_content(".cbam-map-explorer [data-role=probability]") == \
            f"P({CLASSES[label]}) = {probability:.2f}"
        # Grad-CAM of the true class at the block's output, coloured with inferno
        expected = colour(np.round(cam.maps[0].numpy() * 255).astype(int), "inferno")
        drawn = canvas_rgb(page, "gradcam")
        assert drawn.shape == expected.shape == (32, 32, 3)
        assert np.abs(drawn - expected).mean() < 1.0 and np.percentile(np.abs(drawn - expected), 99) <= 8
        gates = extract_attention(models[model], x).get(block, {}) if model != "baseline" else {}
        spatial_shown = page.is_visible(".cbam-map-explorer canvas[data-role=spatial]")
        assert spatial_shown == ("spatial" in gates)
        if "spatial" in gates:
            wait_for(page, f"document.querySelector('.cbam-map-explorer canvas[data-role=spatial]')"
                           f".getAttribute('data-drawn') === '{image}|{model}|{block}'")
            expected = colour(np.round(gates["spatial"][0].numpy() * 255).astype(int), "viridis")
            drawn = canvas_rgb(page, "spatial")
            assert drawn.shape == expected.shape
            assert np.abs(drawn - expected).mean() < 1.0
        channels = page.locator(".cbam-map-explorer [data-role=channel]").all_text_contents()
        if "channel" in gates:
            values, indices = torch.topk(gates["channel"][0], 10)
            assert channels == [f"ch {int(i)}: {float(v):.2f}" for i, v in zip(indices, values)]
        else:
            assert channels == []
        assert not outside, f"chapter 9 fetches from outside the site: {outside[:5]}"
        assert not problems, f"chapter 9: {problems[:5]}"
    finally:
        page.close()


def test_chapter_9_shows_the_explorer_once_and_no_frozen_app(browser, server):
    page, _, _ = open_page(browser, f"{server}/chapters/09_gradcam_and_attention_maps.html")
    try:
        assert page.locator(".cbam-map-explorer").count() == 1
        frozen = page.evaluate("""() => [...document.querySelectorAll('article .jupyter-widgets')]
            .filter(w => w.getBoundingClientRect().height > 0).length""")
        assert frozen == 0
        caption = page.locator("text=this explorer runs in the page")
        assert caption.count() == 1
        assert caption.first.locator("a").first.get_attribute("href").endswith(
            "/chapters/09_gradcam_and_attention_maps.ipynb")
        # the figures outside the explorer each appear once
        sources = page.evaluate("""() => [...document.querySelectorAll('article img')]
            .filter(img => !img.closest('.cbam-map-explorer')).map(img => img.currentSrc || img.src)""")
        assert len(sources) == len(set(sources))
    finally:
        page.close()


def test_explorer_pages_stay_light(browser, server):
    """Bytes each page with an explorer transfers on load, and the explorer's own share:
    the Vega scripts it loads and its inline data and script (page-weights.json). The rest
    (the theme, MathJax, the widget manager on pages with apps) every page of the book has."""
    weights = {}
    for chapter in [*sorted(ABLATION_CHAPTERS), "09_gradcam_and_attention_maps"]:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sizes = []
        page.on("response", lambda response: sizes.append((response.url, len(response.body())))
                if response.ok else None)
        page.goto(f"{server}/chapters/{chapter}.html", wait_until="networkidle")
        inline = page.evaluate("""() => [...document.querySelectorAll('script')]
            .filter(s => s.id.startsWith('cbam-') || s.textContent.includes('cbamVegaLibraries')
                         || s.textContent.includes('cbam-map-explorer'))
            .reduce((total, s) => total + new Blob([s.textContent]).size, 0)""")
        page.close()
        scripts = sum(size for url, size in sizes if "/_static/vendor/vega/" in url)
        weights[chapter] = {"page": sum(size for _, size in sizes), "explorer": scripts + inline,
                            "explorer scripts": scripts, "explorer inline data and code": inline}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "page-weights.json").write_text(json.dumps(weights, indent=1))
    print(weights)
    assert all(0 < w["explorer"] < 1_500_000 for w in weights.values()), weights
