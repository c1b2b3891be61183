"""Student notebooks: no solution code survives, and with the solutions put back they run."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cbam_tutorial.book.assignments import AssignmentError, solution_lines, student_version, write_assignments

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    result = subprocess.run([sys.executable, "-m", "cbam_tutorial", "assignments", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def test_every_chapter_has_a_student_version_without_solutions(students):
    total_solutions = 0
    for chapter in CHAPTERS:
        original = nbformat.read(chapter, as_version=4)
        student_text = (students / chapter.name).read_text()
        lines = solution_lines(original)
        total_solutions += len(lines)
        for line in lines:  # the reference lines, searched in the whole file (sources and metadata)
            assert line not in student_text, f"{chapter.name} leaks {line!r}"
        assert "{solution}" not in student_text
        student = nbformat.read(students / chapter.name, as_version=4)
        scaffolds = [c for c in student.cells if "scaffold" in c.metadata.get("tags", [])]
        solutions = [c for c in original.cells if "solution" in c.metadata.get("tags", [])]
        assert len(scaffolds) == len(solutions)
        assert all("YOUR CODE HERE" in c.source for c in scaffolds)
        assert sum("check_" in c.source for c in student.cells) >= len(solutions)  # checks kept
    assert total_solutions > 20


def fill_back(student, original):
    """The student notebook with each scaffold replaced by the reference solution of the same cell id."""
    solutions = {c.id: c.source for c in original.cells if "solution" in c.metadata.get("tags", [])}
    for cell in student.cells:
        if "scaffold" in cell.metadata.get("tags", []):
            cell.source = solutions[cell.id]
    return student


def test_filled_back_code_equals_the_chapters(students):
    for chapter in CHAPTERS:
        original = nbformat.read(chapter, as_version=4)
        filled = fill_back(nbformat.read(students / chapter.name, as_version=4), original)
        assert [c.source for c in filled.cells if c.cell_type == "code"] == \
               [c.source for c in original.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", ["02_channel_attention", "03_spatial_attention", "04_cbam_block"])
def test_student_version_with_solutions_filled_in_executes(students, name, monkeypatch):
    # The chapters that train are covered by the code-equality test above plus their own
    # nbmake run; these three run here in full (a few seconds each).
    from nbclient import NotebookClient

    monkeypatch.setenv("CBAM_TUTORIAL_PROGRESS", "0")
    original = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    filled = fill_back(nbformat.read(students / f"{name}.ipynb", as_version=4), original)
    NotebookClient(filled, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "chapters")}}).execute()
    outputs = "".join(o.get("text", "") for c in filled.cells if c.cell_type == "code" for o in c.outputs)
    assert "Correct: your" in outputs


def test_a_leaking_chapter_is_refused():
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("weights = torch.sigmoid(a + m)", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("weights = torch.sigmoid(a + m)\nprint(weights)"),  # copied on
    ])
    with pytest.raises(AssignmentError, match="would survive"):
        student_version(notebook, "leaky.ipynb")


def test_missing_chapters_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no chapter notebooks"):
        write_assignments(tmp_path / "out", tmp_path / "nowhere")
