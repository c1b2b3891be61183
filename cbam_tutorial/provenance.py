"""Where a result came from: code version, software, machine, time."""
from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch

from . import __version__

REPOSITORY = Path(__file__).resolve().parent.parent


def git_commit() -> dict:
    """{"commit": sha or "unknown", "dirty": bool or None} of the package's checkout now.

    "unknown" unless the package is imported from the top of a git checkout (an editable
    install); an installed wheel has no commit of its own, even inside another repository.
    """
    def git(*args):
        return subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True,
                              text=True, timeout=10)
    try:
        top = git("rev-parse", "--show-toplevel")
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != REPOSITORY:
            return {"commit": "unknown", "dirty": None}
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


@lru_cache(maxsize=1)
def loaded_code() -> dict:
    """The commit of the code this process runs, read at the first call and kept: a later
    checkout or commit does not change the code in memory. train() calls it before it
    trains, so a run started before a commit is not credited to that commit."""
    return git_commit()


def machine_name(device: torch.device) -> str:
    """A human-readable name of the hardware: the GPU's name, or "CPU " and the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model}"


def device_description(device: torch.device) -> str:
    """The machine's name, and on a CPU the threads this process uses, e.g. "CPU X, 2 threads"."""
    if device.type != "cpu":
        return machine_name(device)
    return f"{machine_name(device)}, {torch.get_num_threads()} threads"


def provenance(device: torch.device) -> dict:
    """Everything a results file records about how it was made (besides its settings)."""
    import torchvision

    return {
        **loaded_code(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cbam_tutorial": __version__,
        "device": device_description(device),
        "machine": machine_name(device),
        "platform": platform.platform(),
    }
