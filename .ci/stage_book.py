"""Copy the book's sources into a folder where they are executed once and built from there.

    python .ci/stage_book.py _stage

`make test` runs nbmake on the staged notebooks with --overwrite (executing every chapter
once, keeping outputs and widget state), then builds the staged book with execution
switched off, so the site shows exactly the outputs nbmake checked.
"""
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["_config.yml", "_toc.yml", "book", "chapters", "results"]


def main(target: str) -> int:
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for part in PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        else:
            shutil.copy2(source, target / part)
    config = (target / "_config.yml").read_text()
    if "execute_notebooks: force" not in config:
        raise SystemExit("_config.yml no longer says 'execute_notebooks: force'; update .ci/stage_book.py")
    (target / "_config.yml").write_text(config.replace("execute_notebooks: force", "execute_notebooks: \"off\""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
