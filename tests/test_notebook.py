"""glue works in the book build (myst-nb) and without myst-nb (Jupyter, Colab)."""
import builtins

import pytest

from cbam_tutorial.book import notebook


@pytest.fixture
def without_myst_nb(monkeypatch):
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.split(".")[0] == "myst_nb":
            raise ModuleNotFoundError("No module named 'myst_nb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)


def test_without_myst_nb_glue_shows_only_what_it_is_asked_to(without_myst_nb, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda value: shown.append(value))
    notebook.glue("hidden", 1.5, display=False)
    notebook.glue("shown", "91.3%")
    assert shown == ["91.3%"]


def test_with_myst_nb_glue_hands_the_value_to_myst_nb(monkeypatch):
    calls = []
    monkeypatch.setattr(notebook, "_myst_nb_glue", lambda: lambda *a, **k: calls.append((a, k)))
    notebook.glue("accuracy", "91.3%", display=False)
    assert calls == [(("accuracy", "91.3%"), {"display": False})]


def test_a_name_is_required():
    with pytest.raises(ValueError, match="non-empty name"):
        notebook.glue("", 1)


def test_no_chapter_imports_a_build_only_package():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [*sorted((root / "chapters").glob("*.ipynb")), root / "book" / "teachers_guide.ipynb"]:
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for package in ("myst_nb", "sphinx", "jupyter_book", "timm", "pytorch_grad_cam"):
            assert f"import {package}" not in code and f"from {package}" not in code, (path.name, package)
