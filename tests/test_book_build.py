"""The site builds from a clean state with warnings as errors (every chapter executed)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed")
def test_book_builds_with_warnings_as_errors(tmp_path):
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--builder", "html", "-W", "--keep-going",
         "--path-output", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html"))
    for chapter in sorted((ROOT / "chapters").glob("*.ipynb")):
        page = f"chapters/{chapter.stem}.html"
        assert page in pages, f"{page} missing from the built site"
        text = (html / page).read_text()
        # the Colab button names the page's own notebook
        assert "colab.research.google.com/github/" in text and f"/chapters/{chapter.name}" in text
