"""Student versions of the chapters: solutions out, scaffolds and checks in.

    python -m cbam_tutorial assignments --out student/

In a chapter, a code cell tagged `solution` holds a reference solution and, in its
metadata, the `scaffold` a student starts from; markdown cells with a `{solution}`
directive hold the answers to questions. A student notebook keeps everything else (the
narrative, the exercises, the `check_...` cells), replaces each solution cell by its
scaffold (tagged `scaffold`, same cell id) and drops the answers. It is then searched for
every line of every reference solution; if one survived anywhere, nothing is written.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

from . import book_root

DEFAULT_SCAFFOLD = "# YOUR CODE HERE\nraise NotImplementedError"
SOLUTION_DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{solution\}.*?^\1\s*$", re.MULTILINE | re.DOTALL)


class AssignmentError(RuntimeError):
    """A student notebook would leak a solution, or a chapter is malformed."""


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def solution_lines(notebook) -> set[str]:
    """The substantive lines of every solution cell (what must not reach a student)."""
    lines = set()
    for cell in notebook.cells:
        if cell.cell_type == "code" and "solution" in _tags(cell):
            for line in cell.source.splitlines():
                text = line.strip()
                if len(text) >= 12 and not text.startswith("#") and not text.startswith(("def ", "class ")) \
                        and text not in ("super().__init__()", "return x"):
                    lines.add(text)
    return lines


def student_version(notebook, name: str = "") -> object:
    """A copy of `notebook` (nbformat v4) with solutions replaced by scaffolds and answers removed."""
    student = copy.deepcopy(notebook)
    cells = []
    for cell in student.cells:
        tags = _tags(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "solution" in tags:
                cell.source = cell.metadata.pop("scaffold", DEFAULT_SCAFFOLD)
                cell.metadata["tags"] = ["scaffold"]
        elif cell.cell_type == "markdown" and "{solution}" in cell.source:
            cell.source = SOLUTION_DIRECTIVE.sub("", cell.source).strip()
            if not cell.source:
                continue
            if "{solution}" in cell.source:
                raise AssignmentError(f"{name}: a solution directive without a closing fence; fix the chapter")
        cells.append(cell)
    student.cells = cells
    leaked = [line for line in solution_lines(notebook)
              if any(line in c.source for c in student.cells)]
    if leaked:
        raise AssignmentError(f"{name}: solution code would survive in the student notebook: {leaked[:3]}")
    return student


def chapters_dir() -> Path:
    """The book checkout's chapters/ folder (see book_root)."""
    return book_root() / "chapters"


def write_assignments(out: str | Path, chapters: str | Path | None = None) -> list[Path]:
    """Write a student version of every chapter notebook in `chapters` into `out`."""
    import nbformat

    chapters, out = Path(chapters) if chapters is not None else chapters_dir(), Path(out)
    notebooks = sorted(chapters.glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no chapter notebooks in {chapters}; run from a clone of the repository "
                                "or pass --chapters DIR")
    versions = {path: student_version(nbformat.read(path, as_version=4), path.name) for path in notebooks}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, student in versions.items():
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    return written
