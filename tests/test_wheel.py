"""The package as a user installs it: a wheel, in a fresh virtual environment, used far
from the repository.

The wheel is built from this checkout and installed by pip into a new virtual environment
without dependencies; torch and the rest come from this test environment through a .pth
line (a plain path: this environment's own .pth files, the editable install of the
package among them, are not read from there), so the package can only come from the wheel.
Every probe runs in an empty folder outside the repository.
"""
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from cbam_tutorial.data import data_root, find_archive

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(base / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = (base / "dist").glob("cbam_tutorial-*.whl")
    environment = base / "fresh"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (fresh_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "python": python, "site": fresh_site, "cwd": elsewhere}


def run_installed(installed, code: str, **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("CBAM_TUTORIAL_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(CBAM_TUTORIAL_PROGRESS="0", **env)
    return subprocess.run([str(installed["python"]), "-c", code], capture_output=True, text=True,
                          cwd=installed["cwd"], env=environment, timeout=600)


def test_the_wheel_holds_the_library_and_the_book_code_but_no_book_files(installed):
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "cbam_tutorial").rglob("*.py")}
    assert sources <= set(names), f"modules missing from the wheel: {sorted(sources - set(names))}"
    assert "cbam_tutorial/csrc/cbam_gate.cpp" in names
    assert not [n for n in names if n.startswith(("chapters/", "results/", "tests/")) or n.endswith(".ipynb")]


def test_an_installed_wheel_trains_and_explains_without_the_repository(installed):
    archive = find_archive(data_root())
    if archive is None:
        pytest.skip("needs CIFAR-10: the offline archive ($CBAM_TUTORIAL_CIFAR10_ARCHIVE)")
    code = """
import json
import cbam_tutorial
from cbam_tutorial.gradcam import grad_cam
from cbam_tutorial.images import to_model_input
from cbam_tutorial.data import load_cifar10
from cbam_tutorial.train import train

data = load_cifar10()
result = train(None, "cbam", profile="tiny", data=data, progress=False)
maps = grad_cam(result.model, to_model_input(data.test_images[:4]))
print(json.dumps({"module": cbam_tutorial.__file__, "test_accuracy": result.test["accuracy"],
                  "commit": result.provenance["commit"], "heatmap": list(maps.maps.shape)}))
"""
    done = run_installed(installed, code, CBAM_TUTORIAL_DATA=str(data_root()),
                         CBAM_TUTORIAL_CIFAR10_ARCHIVE=str(archive))
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["module"].startswith(str(installed["site"]))
    assert 0 <= report["test_accuracy"] <= 1 and report["heatmap"][0] == 4
    assert report["commit"] == "unknown"  # a wheel has no checkout to read a commit from


def test_the_book_subpackage_asks_for_its_extra(installed):
    code = """
import sys
sys.modules["nbformat"] = None  # as if the book extra were not installed
import cbam_tutorial.train  # the library imports without it
try:
    import cbam_tutorial.book
except ImportError as error:
    print(error)
else:
    print("imported")
"""
    done = run_installed(installed, code)
    assert done.returncode == 0, done.stderr[-3000:]
    message = done.stdout.strip()
    assert "book" in message and 'pip install "cbam-tutorial[book]"' in message and "nbformat" in message


def test_the_book_code_outside_a_checkout_says_where_its_files_are(installed):
    code = """
from cbam_tutorial.book.reference import reference_records
from cbam_tutorial.book.links import colab_url
print(colab_url("chapters/01_introduction.ipynb"))
try:
    reference_records("ablation-all-cpu.jsonl")
except FileNotFoundError as error:
    print(error)
"""
    done = run_installed(installed, code)
    assert done.returncode == 0, done.stderr[-3000:]
    link, message = done.stdout.strip().splitlines()
    assert link == "None"  # no book configuration here, so no link rather than a wrong one
    assert "no book checkout" in message and "clone" in message
