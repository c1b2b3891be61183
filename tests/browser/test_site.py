"""The built site in a real browser (Debian's headless Chromium through Playwright).

Run by `make test` after the book is built, with BOOK_HTML naming the site's folder; each
page is served over HTTP, opened, checked and photographed into SCREENSHOTS. Nothing may
be fetched from outside the site: every script, font and image must be the site's own.
"""
import pytest

from browsing import PAGES, SCREENSHOTS, needs_site, open_page

pytestmark = needs_site


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_completely(browser, server, name):
    page, problems, outside = open_page(browser, f"{server}/{name}.html")
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name.replace('/', '__')}.png"), full_page=True)
        assert not outside, f"{name} fetches from outside the site: {outside[:5]}"
        assert not problems, f"{name}: {problems[:5]}"
        broken = page.evaluate("""() => [...document.images]
            .filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src)""")
        assert not broken, f"{name}: images that did not load: {broken[:5]}"
        article = page.locator("article").first.inner_text()
        assert len(article) > 300, f"{name}: almost no text"
        if name.startswith("chapters/"):
            notebook = f"chapters/{name.split('/')[1]}.ipynb"
            colab = page.evaluate("""() => [...document.querySelectorAll('a')].map(a => a.href)
                .filter(h => h.includes('colab.research.google.com'))""")
            assert colab and all(href.endswith("/" + notebook) for href in colab), \
                f"{name}: Colab links {colab} do not name {notebook}"
            assert page.locator("mjx-container").count() > 0 or "$" not in article, f"{name}: math not rendered"
            assert "{glue" not in article, f"{name}: unresolved glue reference"
    finally:
        page.close()


FIGURES = {  # chapters whose cells draw figures: at least this many images on the page
    "05_training_on_cifar10": 2, "06_ablation_channel_pooling": 1, "07_ablation_spatial_attention": 1,
    "08_ablation_arrangement": 2, "09_gradcam_and_attention_maps": 4, "04_cbam_block": 1,
}
WIDGETS = ["04_cbam_block", "08_ablation_arrangement"]  # chapter 9's app is an explorer (test_explorers.py)


@pytest.mark.parametrize("chapter", sorted(FIGURES))
def test_figures_are_on_the_page(browser, server, chapter):
    page, _, _ = open_page(browser, f"{server}/chapters/{chapter}.html")
    try:
        sizes = page.evaluate("""() => [...document.querySelectorAll('article img')]
            .map(img => [img.naturalWidth, img.naturalHeight])""")
        big = [s for s in sizes if s[0] >= 200 and s[1] >= 100]
        assert len(big) >= FIGURES[chapter], f"{chapter}: figures {sizes}"
    finally:
        page.close()


@pytest.mark.parametrize("chapter", WIDGETS)
def test_each_app_appears_once_as_a_picture(browser, server, chapter):
    """A static page cannot run an app's callbacks: it shows the app's picture, once, and
    no frozen widget beside it; the caption under it links to the chapter in Colab."""
    page, _, _ = open_page(browser, f"{server}/chapters/{chapter}.html")
    try:
        frozen = page.evaluate("""() => [...document.querySelectorAll('article .jupyter-widgets')]
            .filter(w => w.getBoundingClientRect().height > 0).length""")
        assert frozen == 0, f"{chapter}: {frozen} frozen widget views on the page"
        captions = page.locator("text=this app is a picture of the state above")
        assert captions.count() == 1, f"{chapter}: {captions.count()} app captions"
        link = captions.first.locator("a").first.get_attribute("href")
        assert link.endswith(f"/chapters/{chapter}.ipynb"), link
        # the output just before the caption is the app's picture, and it is not empty
        size = page.evaluate("""() => {
            const caption = [...document.querySelectorAll('article p')]
                .find(p => p.textContent.includes('this app is a picture of the state above'));
            const cell = caption.closest('.cell_output') || caption.parentElement;
            const images = [...cell.querySelectorAll('img')];
            const picture = images[images.length - 1];
            return picture ? [picture.naturalWidth, picture.naturalHeight] : null;
        }""")
        assert size and size[0] >= 200 and size[1] >= 100, f"{chapter}: app picture {size}"
        # every picture on the page is different: no figure is shown twice
        sources = page.evaluate("""() => [...document.querySelectorAll('article img')]
            .map(img => img.currentSrc || img.src)""")
        assert len(sources) == len(set(sources)), f"{chapter}: a picture appears twice"
    finally:
        page.close()


@pytest.mark.parametrize("name", [p for p in PAGES if p.startswith("chapters/")])
def test_code_cells_do_not_run_past_the_page(browser, server, name):
    page, _, _ = open_page(browser, f"{server}/{name}.html")
    try:
        clipped = page.evaluate("""() => [...document.querySelectorAll('div.cell_input pre')]
            .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
            .map(pre => pre.textContent.split('\\n').find(l => l.length > 80) || pre.textContent.slice(0, 80))""")
        assert not clipped, f"{name}: code cells wider than the page: {clipped[:3]}"
    finally:
        page.close()
