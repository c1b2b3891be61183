"""The committed chapters: no outputs, the parts every chapter promises, numbers from cells."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.ipynb"))
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


# the width of a code cell on the rendered page, in characters of its monospace font
CODE_LINE_LIMIT = 88


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_fit_the_page(path):
    long = [f"cell {index}: {line.strip()[:60]}... ({len(line)} characters)"
            for index, cell in enumerate(nbformat.read(path, as_version=4).cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > CODE_LINE_LIMIT]
    assert not long, f"{path.name}: lines over {CODE_LINE_LIMIT} characters:\n" + "\n".join(long)


def test_the_package_code_that_chapters_show_fits_the_page():
    """show_source() prints package functions into chapter 5: their lines obey the limit too."""
    shown = (ROOT / "cbam_tutorial" / "loop.py").read_text().splitlines()
    assert not [n for n, line in enumerate(shown, 1) if len(line) > CODE_LINE_LIMIT]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_objectives_exercises_and_summary(path):
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    assert "**Learning objectives**" in text
    assert "{exercise}" in text and "{solution}" in text
    assert "## Summary" in text


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_glue_reference_is_glued_by_a_cell(path):
    cells = nbformat.read(path, as_version=4).cells
    referenced = set(re.findall(r"\{glue:text\}`([^`]+)`", "\n".join(c.source for c in cells if c.cell_type == "markdown")))
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    for key in referenced:
        # glued literally, or through an f-string whose fixed parts all appear in the key
        literal = re.search(rf'glue\(\s*"{re.escape(key)}"', code) is not None
        templated = any(all(part in key for part in re.split(r"\{[^}]+\}", template) if part)
                        for template in re.findall(r'glue\(\s*f"([^"]+)"', code))
        assert literal or templated, f"{path.name}: {key!r} is referenced but never glued"


def test_chapter_5_shows_the_loop_that_the_engine_runs_and_runs_it():
    """What the reader studies is the code that runs: chapter 5 shows the source of the
    package's loop functions, imports those very objects, calls them by hand, and the
    engine calls the same objects."""
    import cbam_tutorial.loop as loop
    import cbam_tutorial.train as engine

    cells = nbformat.read(ROOT / "chapters" / "05_training_on_cifar10.ipynb", as_version=4).cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert re.search(r"from cbam_tutorial\.loop import \([^)]*train_one_epoch", code)
    assert re.search(r"from cbam_tutorial\.loop import \([^)]*tta_logits", code)
    assert "show_source(train_one_epoch)" in code and "show_source(tta_logits)" in code
    assert "def train_one_epoch" not in code  # shown from the package, never a copy
    assert re.search(r"measured = train_one_epoch\(model, loader\.epoch\(epoch\)", code)
    assert engine.train_one_epoch is loop.train_one_epoch and engine.evaluate is loop.evaluate
    import inspect

    source = inspect.getsource(engine.train)
    assert "train_one_epoch(" in source and "evaluate(" in source
