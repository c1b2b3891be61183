"""Time every chapter as a student would run it: alone, in a fresh kernel, nothing trained yet.

Each notebook runs with nbclient in a fresh kernel, with its own empty data folder
(only the decoded CIFAR-10 cache is linked in, so the one-off download or decoding is
not counted), so every model a chapter needs is trained by that chapter. Training runs
log their images and FLOPs (CBAM_TUTORIAL_TRAIN_LOG), which the teacher's guide uses to
estimate GPU times. Writes results/chapter-timings.json.

    python benchmarks/time_chapters.py                    # all chapters, one after another
    python benchmarks/time_chapters.py --only 05 09       # chapters whose names start so
    python benchmarks/time_chapters.py --out results/chapter-timings-fp32.json
                                                          # a CPU without native bf16

Each chapter runs in the profile it chooses on this machine (quick, or quick-fp32 where the
CPU only emulates bf16); the file records which, run by run, and whether bf16 is native.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cbam_tutorial.data import data_root  # noqa: E402
from cbam_tutorial.devices import cpu_supports_bf16  # noqa: E402
from cbam_tutorial.provenance import provenance  # noqa: E402


def time_notebook(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        for cache in data_root().glob("cifar10-*.npz"):
            (data_dir / cache.name).symlink_to(cache)
        log = Path(scratch) / "train-log.jsonl"
        saved = {k: os.environ.get(k) for k in ("CBAM_TUTORIAL_DATA", "CBAM_TUTORIAL_TRAIN_LOG",
                                                 "CBAM_TUTORIAL_PROGRESS")}
        os.environ.update(CBAM_TUTORIAL_DATA=str(data_dir), CBAM_TUTORIAL_TRAIN_LOG=str(log),
                          CBAM_TUTORIAL_PROGRESS="0")
        try:
            notebook = nbformat.read(path, as_version=4)
            started = time.perf_counter()
            NotebookClient(notebook, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            seconds = time.perf_counter() - started
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"notebook": path.relative_to(ROOT).as_posix(), "seconds": round(seconds, 1),
            "training_runs": runs, "train_seconds": round(sum(r["train_seconds"] for r in runs), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="chapter name prefixes to time")
    parser.add_argument("--out", default=str(ROOT / "results" / "chapter-timings.json"))
    args = parser.parse_args()
    notebooks = sorted((ROOT / "chapters").glob("*.ipynb"))
    if args.only:
        notebooks = [n for n in notebooks if any(n.name.startswith(p) for p in args.only)]
    import torch

    out = Path(args.out)
    previous = json.loads(out.read_text())["chapters"] if out.exists() else []
    timings = {t["notebook"]: t for t in previous}
    for path in notebooks:
        result = time_notebook(path)
        timings[result["notebook"]] = result
        print(f"{result['notebook']:50s} {result['seconds']:7.1f} s  (training {result['train_seconds']:.1f} s)",
              flush=True)
    payload = {"provenance": {**provenance(torch.device("cpu")), "threads": torch.get_num_threads(),
                              "cpu_count": os.cpu_count(), "native_bf16": cpu_supports_bf16(),
                              "command": "python benchmarks/time_chapters.py " + " ".join(sys.argv[1:])},
               "chapters": sorted(timings.values(), key=lambda t: t["notebook"])}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
