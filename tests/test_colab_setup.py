"""The chapters' Colab set-up cell, run offline with Colab simulated.

The cell must do nothing outside Colab. In Colab (simulated by a `google.colab` module)
it clones the repository named in _config.yml, installs the package from the clone
without touching torch, and makes the running kernel import it from there.
"""
import json
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import yaml

from cbam_test_models import snapshot_working_tree

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]


def setup_cell(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if "colab-setup" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one cell tagged colab-setup"
    return cells[0].source


def test_every_chapter_has_the_same_setup_cell_naming_the_configured_repository():
    sources = {setup_cell(path) for path in NOTEBOOKS}
    assert len(sources) == 1
    source = sources.pop()
    assert f'REPOSITORY, BRANCH = "{CONFIG["url"]}", "{CONFIG["branch"]}"' in source
    assert "torch" not in source.split("%pip", 1)[1].splitlines()[0]  # the pip line installs only the package
    assert "myst_nb" not in source


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_outside_colab_the_cell_does_nothing(shell, monkeypatch):
    calls = []
    shell.register_magic_function(lambda line: calls.append(line), "line", "pip")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell.run_cell(setup_cell(NOTEBOOKS[0]), store_history=False).raise_error()
    assert calls == [] and shell.user_ns["IN_COLAB"] is False


def git(*args, cwd):
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=cwd,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def simulated_colab(shell, tmp_path, monkeypatch):
    """A kernel that looks like Colab's, the repository served from a local copy of this
    working tree (git's url.insteadOf), and a way to run the real setup cell."""
    origin = snapshot_working_tree(ROOT, tmp_path / "origin", CONFIG["branch"], message="first")
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f'[url "file://{origin}"]\n\tinsteadOf = {CONFIG["url"]}\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    checkout = tmp_path / "content" / "cbam-tutorial"
    monkeypatch.setenv("CBAM_TUTORIAL_CHECKOUT", str(checkout))
    pip_lines = []
    shell.register_magic_function(lambda line: pip_lines.append(line), "line", "pip")
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "content").mkdir()
    monkeypatch.chdir(tmp_path / "content")

    def run_setup_cell():
        shell.run_cell(setup_cell(NOTEBOOKS[0]), store_history=False).raise_error()

    return SimpleNamespace(origin=origin, checkout=checkout, pip_lines=pip_lines, run=run_setup_cell)


def test_in_simulated_colab_it_clones_installs_and_imports_from_the_clone(shell, simulated_colab, tmp_path):
    colab = simulated_colab
    colab.run()
    checkout = colab.checkout
    assert shell.user_ns["IN_COLAB"] is True
    assert (checkout / "chapters" / NOTEBOOKS[0].name).is_file() and (checkout / "results").is_dir()
    assert colab.pip_lines == [f"install --quiet -e {checkout}[book]"]
    assert sys.path[0] == str(checkout) and Path.cwd() == checkout

    # the kernel now imports the package from the clone, caching data in the runtime's ~/.cache
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import cbam_tutorial.data as d, cbam_tutorial.book.links as l; "
             "print(d.__file__); print(d.data_root()); print(l.colab_url('chapters/x.ipynb'))")
    home = tmp_path / "root"
    out = subprocess.run([sys.executable, "-c", probe, str(checkout)], capture_output=True, text=True,
                         cwd=checkout, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert out.returncode == 0, out.stderr
    module_file, data_root, colab_link = out.stdout.split()
    assert module_file.startswith(str(checkout)) and data_root == str(home / ".cache" / "cbam-tutorial")
    assert colab_link.endswith(f"/blob/{CONFIG['branch']}/chapters/x.ipynb")

    # and the install the cell asks for would add the package only: torch and the rest stay
    report = tmp_path / "report.json"
    dry = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-build-isolation",
                          "--report", str(report), "-e", f"{checkout}[book]"], capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-2000:]
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["cbam-tutorial"], installed


def test_running_the_cell_again_updates_an_older_clone_and_keeps_data(shell, simulated_colab):
    colab = simulated_colab
    colab.run()
    (colab.checkout / "data" / "cifar10-cache.npz").write_text("a cached download")  # ignored by git
    (colab.origin / "chapters" / "new_chapter.md").write_text("published after the first clone\n")
    git("add", "--all", cwd=colab.origin)
    git("commit", "--quiet", "-m", "second", cwd=colab.origin)
    colab.run()  # a re-run, or the first cell after a runtime restart: same checkout, newer branch
    assert (colab.checkout / "chapters" / "new_chapter.md").is_file()
    assert (colab.checkout / "data" / "cifar10-cache.npz").read_text() == "a cached download"
    assert sys.path.count(str(colab.checkout)) == 1 and len(colab.pip_lines) == 2


def test_an_interrupted_clone_is_cloned_again(shell, simulated_colab):
    colab = simulated_colab
    (colab.checkout / ".git").mkdir(parents=True)  # what a clone stopped half-way leaves
    colab.run()
    assert (colab.checkout / "pyproject.toml").is_file() and (colab.checkout / "cbam_tutorial").is_dir()


def test_links_follow_the_book_configuration(tmp_path):
    from cbam_tutorial.book.links import colab_url

    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork/\n  branch: dev\n  path_to_book: docs\n")
    assert colab_url("chapters/a.ipynb", config) == \
        "https://colab.research.google.com/github/someone/fork/blob/dev/docs/chapters/a.ipynb"
    assert colab_url("chapters/a.ipynb", tmp_path / "missing.yml") is None
