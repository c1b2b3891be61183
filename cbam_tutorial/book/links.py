"""Links from the rendered book back to runnable notebooks.

The repository, branch and book path are set once, in the book's `_config.yml`; the
Colab launch buttons of Jupyter Book and the links under the apps both derive from it.

    show_app(app, "chapters/04_cbam_block.ipynb")   # the widget live, a picture on the site
"""
from __future__ import annotations

from pathlib import Path

import yaml

from . import book_root


def config_path() -> Path | None:
    """The book's _config.yml, or None outside a checkout of the book."""
    try:
        return book_root() / "_config.yml"
    except FileNotFoundError:
        return None


def repository(config: Path | None = None) -> dict | None:
    """{"url", "branch", "path_to_book"} from the book's configuration, or None outside a checkout."""
    config = config or config_path()
    if config is None or not Path(config).is_file():
        return None

    settings = yaml.safe_load(Path(config).read_text()).get("repository") or {}
    if "url" not in settings:
        return None
    return {"url": settings["url"].rstrip("/"), "branch": settings.get("branch", "main"),
            "path_to_book": (settings.get("path_to_book") or "").strip("/")}


def colab_url(notebook: str, config: Path | None = None) -> str | None:
    """The Colab address that opens `notebook` (a path relative to the book root)."""
    repo = repository(config)
    if repo is None:
        return None
    owner_and_name = repo["url"].split("github.com/", 1)[-1]
    path = "/".join(p for p in (repo["path_to_book"], notebook) if p)
    return f"https://colab.research.google.com/github/{owner_and_name}/blob/{repo['branch']}/{path}"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def app_bundle(app, site_view=None) -> dict:
    """One display bundle holding the app twice: its live widget view, and for the site
    either `site_view`'s HTML (an explorer that runs in the page without a kernel, e.g.
    map_explorer.MapExplorer) or a PNG of the app's current state (app.snapshot()), so
    that each place renders exactly one of them."""
    bundle = {WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": app.widget.model_id},
              "text/plain": f"{type(app).__name__} (an interactive app; run the notebook to use it)"}
    if site_view is not None:
        bundle["text/html"] = site_view.html()
        return bundle
    import base64
    import io

    import matplotlib.pyplot as plt

    figure = app.snapshot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    bundle["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return bundle


def show_app(app, notebook: str, site_view=None) -> None:
    """Show an interactive app once: live where a kernel runs it; on the site, `site_view`
    (precomputed, interactive in the page) or a picture of the app's state.

    Jupyter and Colab render the richest type of the bundle, the widget; the book's HTML
    build prefers the HTML or the PNG (nb_mime_priority_overrides in _config.yml), since a
    static page cannot run the widget's Python callbacks. A caption links to Colab.
    """
    from IPython.display import Markdown, display

    display(app_bundle(app, site_view), raw=True)
    url = colab_url(notebook)
    if url and site_view is None:
        display(Markdown(f"*On the book's web page this app is a picture of the state above; "
                         f"[open the chapter in Colab]({url}) to change its settings.*"))
    elif url:
        display(Markdown(f"*On the book's web page this explorer runs in the page, from results computed "
                         f"when the book was built; [open the chapter in Colab]({url}) to use the live app.*"))
