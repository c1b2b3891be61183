"""Links from the rendered book back to runnable notebooks.

The repository, branch and book path are set once, in the book's `_config.yml`; the
Colab launch buttons of Jupyter Book and the links under widget snapshots both derive
from it.

    show_snapshot(app, "chapters/04_cbam_block.ipynb")   # figure + "run it live in Colab" link
"""
from __future__ import annotations

from pathlib import Path

from .data import PACKAGE_ROOT

CONFIG = PACKAGE_ROOT / "_config.yml"


def repository(config: Path = CONFIG) -> dict | None:
    """{"url", "branch", "path_to_book"} from the book's configuration, or None outside a checkout."""
    if not Path(config).is_file():
        return None
    import yaml

    settings = yaml.safe_load(Path(config).read_text()).get("repository") or {}
    if "url" not in settings:
        return None
    return {"url": settings["url"].rstrip("/"), "branch": settings.get("branch", "main"),
            "path_to_book": (settings.get("path_to_book") or "").strip("/")}


def colab_url(notebook: str, config: Path = CONFIG) -> str | None:
    """The Colab address that opens `notebook` (a path relative to the book root)."""
    repo = repository(config)
    if repo is None:
        return None
    owner_and_name = repo["url"].split("github.com/", 1)[-1]
    path = "/".join(p for p in (repo["path_to_book"], notebook) if p)
    return f"https://colab.research.google.com/github/{owner_and_name}/blob/{repo['branch']}/{path}"


def show_snapshot(app, notebook: str) -> None:
    """Display the app's current state as a static figure and a link to run it live.

    In a live session the app's widget is shown above it; the rendered book keeps this
    figure, so that readers of the static page see what the app shows.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    figure = app.snapshot()
    display(figure)
    plt.close(figure)
    url = colab_url(notebook)
    if url:
        display(Markdown(f"*A snapshot of the app above. [Run it live in Colab]({url}) to change its "
                         "settings.*"))
