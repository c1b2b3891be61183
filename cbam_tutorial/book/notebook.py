"""What a chapter needs from its notebook environment, wherever it runs.

    from cbam_tutorial.book.notebook import glue
    glue("val_accuracy", "91.3%", display=False)

`glue` names a value for the book's text (`{glue:text}`). In the book build it is
myst-nb's glue; in Jupyter or Colab, where myst-nb is not installed (it is a build tool,
not a run-time requirement), it shows the value when asked to and otherwise does nothing,
so a chapter runs the same everywhere. `show_source` shows a function's code.
"""
from __future__ import annotations

from typing import Any


def _myst_nb_glue():
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return None
    return myst_glue


def glue(name: str, value: Any, display: bool = True) -> None:
    """Name `value` for the book's text; show it if `display` (as myst-nb's glue does)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty name, got {name!r}")
    myst_glue = _myst_nb_glue()
    if myst_glue is not None:
        myst_glue(name, value, display=display)
    elif display:
        from IPython.display import display as show

        show(value)


def show_source(function) -> None:
    """Show the source code of `function` (or class) as a highlighted code listing.

    A chapter shows the package's own code this way and then calls that very object, so
    what the reader studies is what runs.
    """
    import inspect

    from IPython.display import Code, display

    display(Code(inspect.getsource(function), language="python"))
