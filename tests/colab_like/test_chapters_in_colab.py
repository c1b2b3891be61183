"""Every chapter, executed as a Colab learner runs it, in a Colab-like environment.

The kernel runs in the virtual environment named by $COLAB_PYTHON (made by `make
colab-env` from requirements-colab.txt: Colab's versions of IPython, ipykernel,
ipywidgets, numpy, matplotlib and pandas, and no myst-nb, sphinx or timm). A `google.colab`
module on the kernel's path makes each chapter's real setup cell take its Colab branch: it
clones the repository (git's `url.<base>.insteadOf` points the GitHub address at a
snapshot of this working tree on the configured branch) and `%pip install`s the package
from the clone. Each chapter gets a fresh kernel and a fresh checkout, as each Colab
launch gets a fresh runtime, and runs in the `tiny` profile. Any error or traceback in
any cell fails its test. Two things are shared between the runtimes, each to save about
half a minute per chapter on 2 cores: the cache of compiled C++ extensions, so that the
fused CBAM kernels compile once, in the first chapter that trains on the CPU (that
chapter tests the compile), not again in every later one; and the decoded data set: the
first chapter that loads CIFAR-10 decodes the archive into its empty cache (that chapter
tests the decoding), and the later runtimes start with that one file in theirs.

    COLAB_PYTHON=.venv-colab/bin/python CBAM_TUTORIAL_CIFAR10_ARCHIVE=... pytest tests/colab_like -v -s
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from cbam_test_models import snapshot_working_tree

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
REPOSITORY = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
COLAB_PYTHON = os.environ.get("COLAB_PYTHON")
ARCHIVE = os.environ.get("CBAM_TUTORIAL_CIFAR10_ARCHIVE")
BUILD_ONLY = ("myst_nb", "sphinx", "timm", "jupyter_book", "sphinx_exercise")
VERSIONS = ("IPython", "ipykernel", "ipywidgets", "numpy", "matplotlib", "pandas", "torch", "torchvision")

pytestmark = pytest.mark.skipif(not COLAB_PYTHON, reason="set COLAB_PYTHON to the Colab-like environment's "
                                "python (make colab-env; make test does both)")


def run(command, **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """Paths and the kernel for a simulated Colab runtime."""
    if not ARCHIVE or not Path(ARCHIVE).is_file():
        pytest.fail("CBAM_TUTORIAL_CIFAR10_ARCHIVE must name the offline CIFAR-10 archive (this test has "
                    "no internet to download the original)")
    base = tmp_path_factory.mktemp("colab")
    snapshot = snapshot_working_tree(ROOT, base / "snapshot", REPOSITORY["branch"])
    gitconfig = base / "gitconfig"
    gitconfig.write_text(f'[url "file://{snapshot}"]\n\tinsteadOf = {REPOSITORY["url"]}\n')
    fake = base / "fake-colab" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text('"""Stands in for Colab\'s module: its presence is all the chapters test."""\n')
    kernels = base / "jupyter" / "kernels" / "colab-like"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        # Colab's kernel has imported google.colab before the first cell runs; frozen modules off
        # keeps ipykernel 6.17's debugger from printing its notice into the log
        "argv": [COLAB_PYTHON, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.exec_lines=['import google.colab']"],
        "display_name": "Colab-like", "language": "python",
        "env": {"PYTHONPATH": str(fake.parent.parent), "GIT_CONFIG_GLOBAL": str(gitconfig),
                "CBAM_TUTORIAL_PROFILE": "tiny", "CBAM_TUTORIAL_CIFAR10_ARCHIVE": str(Path(ARCHIVE).resolve()),
                "TORCH_EXTENSIONS_DIR": str(base / "torch_extensions")},
    }))
    return {"base": base, "jupyter_path": str(base / "jupyter"), "decoded_data": None}


def test_the_environment_has_colabs_versions_and_no_build_tools():
    probe = ("import importlib, importlib.util, json; "
             f"print(json.dumps({{m: importlib.import_module(m).__version__ for m in {VERSIONS!r}}})); "
             f"print(json.dumps([m for m in {BUILD_ONLY!r} if importlib.util.find_spec(m)]))")
    versions, build_tools = run([COLAB_PYTHON, "-c", probe]).splitlines()
    versions = json.loads(versions)
    print("\nColab-like environment:", ", ".join(f"{name} {version}" for name, version in versions.items()))
    assert versions["IPython"].startswith("7.34") and versions["ipywidgets"] == "7.7.1"
    assert versions["ipykernel"].startswith("6.17") and versions["numpy"] == "2.0.2"
    assert json.loads(build_tools) == []


def errors_in(notebook) -> list[str]:
    """Every error output, and every traceback printed to a stream, with the cell it came from."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {index}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and "Traceback (most recent call last)" in output.text:
                found.append(f"cell {index}: traceback printed to {output.name}:\n{output.text[-2000:]}")
    return found


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[path.stem for path in CHAPTERS])
def test_chapter_runs_in_a_fresh_colab_runtime(chapter, colab, monkeypatch):
    runtime = colab["base"] / f"runtime-{chapter.stem}"
    content = runtime / "content"  # Colab's working directory
    content.mkdir(parents=True)
    monkeypatch.setenv("JUPYTER_PATH", colab["jupyter_path"])
    monkeypatch.setenv("CBAM_TUTORIAL_CHECKOUT", str(content / "cbam-tutorial"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(runtime / "cache"))  # a fresh runtime's empty cache
    data_root = runtime / "cache" / "cbam-tutorial"  # the package's default without CBAM_TUTORIAL_DATA
    if colab["decoded_data"] is not None:
        data_root.mkdir(parents=True)
        shutil.copy2(colab["decoded_data"], data_root)
    for name in ("CBAM_TUTORIAL_PROGRESS", "CBAM_TUTORIAL_DATA", "VIRTUAL_ENV", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)  # Colab sets none of them
    before = run([COLAB_PYTHON, "-m", "pip", "list", "--format=freeze"]).splitlines()

    notebook = nbformat.read(chapter, as_version=4)
    client = NotebookClient(notebook, kernel_name="colab-like", timeout=900,
                            resources={"metadata": {"path": str(content)}})
    try:
        client.execute()
    except Exception as error:  # CellExecutionError and kernel deaths alike: say which cell
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # IPython 7 colours its tracebacks
        pytest.fail(f"{chapter.name} failed in the Colab-like environment:\n{plain}"[-6000:], pytrace=False)
    problems = errors_in(notebook)
    assert not problems, "\n".join(problems)
    if colab["decoded_data"] is None:
        colab["decoded_data"] = next(iter(sorted(data_root.glob("cifar10-*.npz"))), None)

    added = set(run([COLAB_PYTHON, "-m", "pip", "list", "--format=freeze"]).splitlines()) - set(before)
    assert {line.split("==")[0].lower() for line in added} <= {"cbam-tutorial", "cbam_tutorial"}, \
        f"the setup cell changed Colab's libraries: {sorted(added)}"
    assert (content / "cbam-tutorial" / "pyproject.toml").is_file()
    print(f"\n{chapter.name}: executed in the Colab-like environment, {len(notebook.cells)} cells, no error")
