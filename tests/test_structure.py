"""The package's shape: imports point one way, importing does nothing, the book is apart.

The layers below are the module map of the README ("How the code is organised"): a module
may import from its own layer or a lower one, never a higher one.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cbam_tutorial"

LAYERS = {
    0: {"settings", "storage", "paper", "result", "allocator", "viz", "devices"},
    1: {"fused", "attention", "__init__"},
    2: {"models", "data", "provenance"},
    3: {"images", "loader", "loop", "cost", "gradcam", "attention_maps", "faithfulness", "profiles",
        "exercises", "exercises.harness", "exercises.readings", "exercises.formulas", "exercises.grading",
        "exercises.attention_checks", "exercises.grad_cam_check"},
    4: {"train"},
    5: {"grids", "comparison", "ledger", "runner", "cluster", "zoo", "compact"},
    6: {"book", "book.notebook", "book.links", "book.reference", "book.assignments", "book.report",
        "book.widgets", "book.grid_explorer", "book.map_explorer"},
    7: {"__main__"},
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").relative_to(PACKAGE).parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def package_imports(path: Path) -> set[str]:
    """The package's modules that `path` imports anywhere (module level or inside functions)."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                target = ".".join(base + [node.module])
                found.add(target if target in LAYER_OF else target.rsplit(".", 1)[0] or "__init__")
            else:  # from . import x
                for alias in node.names:
                    candidate = ".".join(base + [alias.name])
                    found.add(candidate if candidate in LAYER_OF else ".".join(base) or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cbam_tutorial"):
            found.add(node.module.removeprefix("cbam_tutorial").lstrip(".") or "__init__")
    found.discard(name)
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: package_imports(path) for name, path in MODULES.items()}


def test_every_module_has_a_place_in_the_map():
    assert set(MODULES) == set(LAYER_OF), (
        f"not in the map: {sorted(set(MODULES) - set(LAYER_OF))}; "
        f"in the map but gone: {sorted(set(LAYER_OF) - set(MODULES))}")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    upward = {target: LAYER_OF[target] for target in GRAPH[module] if LAYER_OF[target] > LAYER_OF[module]}
    assert not upward, f"{module} (layer {LAYER_OF[module]}) imports from higher layers: {upward}"


def test_no_import_cycles():
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join(path + [module])}"
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            visit(target, path + [module])
        state[module] = "done"

    for module in MODULES:
        visit(module, [])


def test_the_library_never_imports_the_book():
    library = [m for m in MODULES if not m.startswith("book") and m != "__main__"]
    assert not [m for m in library if any(t.startswith("book") for t in GRAPH[m])]


@pytest.mark.parametrize("module", ["train", "loop"])
def test_the_engine_leaves_what_surrounds_a_run_to_its_caller(module):
    # progress bars, the cost log and the allocator are the caller's choices (train()'s
    # progress=, cost_log=; allocator.keep_freed_memory()), never guessed by the engine
    tree = ast.parse(MODULES[module].read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert "allocator" not in GRAPH[module] and "keep_freed_memory" not in names
    assert not {"train_log", "progress", "isatty"} & attributes
    assert not [text for text in strings if "ipykernel" in text]


def test_the_readme_module_map_names_every_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How the code is organised", 1)[1].split("\n## ", 1)[0]
    missing = [m for m in MODULES if m not in ("__init__", "book") and f"{m.split('.')[-1]}" not in section]
    assert not missing, f"the README's module map does not mention {missing}"


# Each module is imported alone in a fresh process: one interpreter imports the third-party
# libraries first (what they do is theirs), then forks a child per module, which watches
# the environment, file opens for writing, new folders and processes while it imports
# that module, and prints what it saw as one JSON line.
PROBE = r"""
import importlib, json, os, sys
import numpy, torch, torchvision, PIL.Image, matplotlib, matplotlib.pyplot, pandas, tqdm
import IPython, IPython.display, ipywidgets, nbformat, yaml
package = os.path.dirname(sys.argv[1])

def watch_and_import(name):
    events = []

    def from_package():
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename.startswith(package):
                return True
            frame = frame.f_back
        return False

    class WatchedEnvironment(dict):
        def __getitem__(self, key):
            if from_package():
                events.append(f"read ${key}")
            return super().__getitem__(key)
        def get(self, key, default=None):
            if from_package():
                events.append(f"read ${key}")
            return super().get(key, default)
        def __contains__(self, key):
            if from_package():
                events.append(f"asked for ${key}")
            return super().__contains__(key)

    os.environ = WatchedEnvironment(os.environ)

    def audit(event, args):
        if event == "open" and args[0] is not None:
            mode, flags = args[1] or "", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                events.append(f"opened {args[0]} for writing")
        elif event in ("os.mkdir", "subprocess.Popen", "os.system", "os.remove", "os.rename"):
            events.append(f"{event} {args[0]}")

    sys.addaudithook(audit)
    importlib.import_module(name)
    return events

for name in sys.argv[2:]:
    sys.stdout.flush()
    child = os.fork()
    if child == 0:
        try:
            print(json.dumps({name: watch_and_import(name)}), flush=True)
        except BaseException as error:
            print(json.dumps({name: [f"import failed: {error!r}"]}), flush=True)
        os._exit(0)
    os.waitpid(child, 0)
"""


def import_events(package_init: Path, names: list[str], cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-B", "-c", PROBE, str(package_init), *names],
                          capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, f"the import probe failed:\n{done.stderr[-3000:]}"
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    assert set(found) == set(names), f"no report for {sorted(set(names) - set(found))}:\n{done.stderr[-3000:]}"
    return found


def test_importing_any_module_reads_no_environment_and_writes_nothing():
    names = ["cbam_tutorial" if m == "__init__" else f"cbam_tutorial.{m}" for m in MODULES if m != "__main__"]
    found = import_events(PACKAGE / "__init__.py", names, ROOT)
    offenders = {module: events for module, events in found.items() if events}
    assert not offenders, f"side effects at import: {offenders}"


def test_the_probe_sees_a_side_effect(tmp_path):
    """The watch itself works: a module that reads a variable and writes a file is caught."""
    fake = tmp_path / "cbam_tutorial"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "noisy.py").write_text(f"import os\nos.environ.get('HOME')\nopen({str(tmp_path / 'x')!r}, 'w').close()\n")
    (fake / "quiet.py").write_text("import os\nSEPARATOR = os.sep\n")
    found = import_events(fake / "__init__.py", ["cbam_tutorial.noisy", "cbam_tutorial.quiet"], tmp_path)
    assert "read $HOME" in found["cbam_tutorial.noisy"]
    assert any("for writing" in event for event in found["cbam_tutorial.noisy"])
    assert found["cbam_tutorial.quiet"] == []
