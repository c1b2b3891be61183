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


def app_bundle(app) -> dict:
    """One display bundle holding the app twice: its live widget view and a PNG of its
    current state (app.snapshot()), so that each place renders exactly one of them."""
    import base64
    import io

    import matplotlib.pyplot as plt

    figure = app.snapshot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return {WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": app.widget.model_id},
            "image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            "text/plain": f"{type(app).__name__} (an interactive app; run the notebook to use it)"}


def show_app(app, notebook: str) -> None:
    """Show an interactive app once: live where a kernel runs it, as a picture on the site.

    Jupyter and Colab render the richest type of the bundle, the widget; the book's HTML
    build prefers the PNG (nb_mime_priority_overrides in _config.yml), since a static
    page cannot run the widget's Python callbacks. A caption links to Colab.
    """
    from IPython.display import Markdown, display

    display(app_bundle(app), raw=True)
    url = colab_url(notebook)
    if url:
        display(Markdown(f"*On the book's web page this app is a picture of the state above; "
                         f"[open the chapter in Colab]({url}) to change its settings.*"))
