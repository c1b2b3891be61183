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
        literal = f'glue("{key}"' in code
        templated = any(all(part in key for part in re.split(r"\{[^}]+\}", template) if part)
                        for template in re.findall(r'glue\(f"([^"]+)"', code))
        assert literal or templated, f"{path.name}: {key!r} is referenced but never glued"
