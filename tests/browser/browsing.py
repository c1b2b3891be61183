"""Opening the built site's pages in Chromium, for the browser checks (see test_site.py).

BOOK_HTML names the built site's folder (`make test` sets it); SCREENSHOTS where the
pages' pictures go. Nothing may be fetched from outside the site: open_page records every
such request (and aborts it) and every console error, for the tests to assert on.
"""
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

HTML = Path(os.environ["BOOK_HTML"]) if os.environ.get("BOOK_HTML") else None
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS", "_build/screenshots"))
ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
PAGES = ["book/intro", *[f"chapters/{c}" for c in CHAPTERS], "book/teachers_guide", "book/references"]

needs_site = pytest.mark.skipif(HTML is None, reason="set BOOK_HTML to a built site (make test does)")


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, outside = [], []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    host = urlparse(url).netloc

    def only_the_site(route):
        if urlparse(route.request.url).netloc in (host, ""):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_site)
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.ok, f"{url}: HTTP {response.status if response else 'no response'}"
    page.wait_for_timeout(500)  # MathJax and the widget manager render after load
    return page, problems, outside
