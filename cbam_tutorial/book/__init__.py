"""The book's side of the project: what the chapters use besides the library.

    from cbam_tutorial.book.notebook import glue          # values for the book's text
    from cbam_tutorial.book.reference import reference_records
    from cbam_tutorial.book.report import ablation_report

Modules: `notebook` (glue, show_source), `reference` (the committed results/), `report`
(an ablation chapter's evidence), `widgets` (the ipywidgets apps), `links` (Colab links
from the book's _config.yml), `assignments` (student notebooks without solutions).

This subpackage needs the `book` extra (`pip install "cbam-tutorial[book]"`); the library
itself (attention, models, training, Grad-CAM, statistics) does not. Everything here that
reads the book's files finds them with book_root().
"""
from __future__ import annotations

from pathlib import Path

# the `book` extra in pyproject.toml: import name -> distribution
EXTRA = {"IPython": "ipython", "ipywidgets": "ipywidgets", "nbformat": "nbformat", "yaml": "pyyaml"}

try:
    import IPython  # noqa: F401
    import ipywidgets  # noqa: F401
    import nbformat  # noqa: F401
    import yaml  # noqa: F401
except ImportError as error:
    missing = EXTRA.get(error.name, error.name)
    raise ImportError(f"cbam_tutorial.book needs the 'book' extra ({missing} is missing): "
                      f"pip install \"cbam-tutorial[book]\" (the library itself works without it)",
                      name=error.name) from error

BOOK_FILES = ("_config.yml", "_toc.yml")


def _is_book(folder: Path) -> bool:
    return all((folder / name).is_file() for name in BOOK_FILES)


def book_root(start: str | Path | None = None) -> Path:
    """The book's checkout: the folder holding _config.yml and _toc.yml.

    Searched from `start` (default: the current directory; chapters run in chapters/ or at
    the root) upwards, then beside the package (an editable install from a checkout).
    A FileNotFoundError says what to do when there is none (e.g. a wheel used elsewhere).
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[2]):
        if _is_book(folder):
            return folder
    raise FileNotFoundError(
        f"no book checkout (a folder with {' and '.join(BOOK_FILES)}) at or above {here}: the "
        "chapters, results and book configuration ship with the repository, not with the package; "
        "run from a clone of it (in Colab the chapters' setup cell clones it)")
