"""A results file as a ledger: one JSON record per line, appended whole, never rewritten.

    append_record(path, record)        # whole line, under an exclusive lock, fsynced
    ledger = read_ledger(path)         # .records, and .set_aside: [(line number, why)]
    key = record_key(record)           # what decides whether a run is already done

A run is "already done" when the file holds a record with the same key, and the key
covers every setting that changes a run's outcome: the model, the attention and its
options, every field of the profile after overrides, the seed, the precision and device
type, and the copy of the data (source and sha256). A rerun with any other setting is a
new run. Fields that do not change a run (the profile's name and description, its list of
seeds, what a chapter does besides training) are left out of the key.

Several processes may append to one file at once: each append takes an exclusive lock
(flock) and writes its line in one go, so no record is lost or interleaved. A line that
cannot be read (a write torn by a crash, foreign text, bytes that are not UTF-8) is set
aside with its line number, never silently dropped and never fatal: the good records are
kept and the next append starts on a fresh line.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .storage import ensure_folder, explain

RECORD_FIELDS = ("configuration", "seed")


@dataclass
class Ledger:
    """The readable records of a results file, and the lines set aside (line number, why)."""

    path: Path
    records: list = field(default_factory=list)
    set_aside: list = field(default_factory=list)

    def report(self) -> list[str]:
        return [f"{self.path}, line {number}: set aside, {why}" for number, why in self.set_aside]


def outcome_settings(config: dict, data_copy: dict | None) -> dict:
    """The settings that decide a run's outcome, from train()'s `config` and its data copy."""
    from .profiles import NOT_OUTCOME, Profile

    profile = {f.name: f.default for f in dataclasses.fields(Profile) if f.default is not dataclasses.MISSING}
    profile.update(config.get("profile") or {})
    for name in NOT_OUTCOME:
        profile.pop(name, None)
    data_copy = data_copy or {}
    return {"model": config.get("model"), "attention": config.get("attention"),
            "attention_options": config.get("attention_options") or {}, "profile": profile,
            "seed": config.get("seed"), "precision": config.get("precision"),
            "device_type": config.get("device_type"),
            "data": {"source": data_copy.get("source", config.get("data_source")), "sha256": data_copy.get("sha256")}}


def settings_digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_key(profile: str, configuration: str, seed: int, settings: dict) -> str:
    """A readable, exact key: profile/configuration/seed, then a digest of every setting."""
    return f"{profile}/{configuration}/seed={seed}/{settings_digest(settings)}"


def record_key(record: dict) -> str:
    """The key of a record, recomputed from its settings where it carries them (so records
    written before keys covered every setting are keyed the same way as new ones)."""
    if "config" in record and "configuration" in record:
        return run_key(record.get("profile", record["config"].get("profile", {}).get("name")),
                       record["configuration"]["name"], record["seed"],
                       outcome_settings(record["config"], record.get("data")))
    return record.get("key")


def read_ledger(path: str | Path) -> Ledger:
    """Every readable record of `path` (an absent file has none), and the lines set aside."""
    path = Path(path)
    ledger = Ledger(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ledger
    except OSError as error:
        raise explain(error, path, "read") from error
    pieces = raw.split(b"\n")
    for number, piece in enumerate(pieces, start=1):
        if not piece.strip():
            continue
        unterminated = number == len(pieces)  # the last piece has no newline after it
        try:
            record = json.loads(piece.decode("utf-8"))
        except UnicodeDecodeError:
            ledger.set_aside.append((number, "bytes that are not UTF-8 text"))
            continue
        except json.JSONDecodeError as error:
            why = ("an incomplete record: a write was interrupted" if unterminated
                   else f"not a JSON record ({error.msg})")
            ledger.set_aside.append((number, why))
            continue
        if not isinstance(record, dict) or not all(name in record for name in RECORD_FIELDS):
            ledger.set_aside.append((number, "JSON that is not a record of the ablation runner"))
            continue
        ledger.records.append(record)
    return ledger


def read_records(path: str | Path) -> list[dict]:
    """The readable records of `path`; lines set aside are reported as a warning."""
    ledger = read_ledger(path)
    for line in ledger.report():
        warnings.warn(line, RuntimeWarning, stacklevel=2)
    return ledger.records


def append_record(path: str | Path, record: dict) -> None:
    """Append `record` as one line, safely beside other writers and after a torn last line.

    The line is written with one write under an exclusive lock and fsynced; if the write
    fails (a full disk), the file is cut back to where it was, so no partial line remains.
    """
    path = Path(path)
    line = (json.dumps(record) + "\n").encode()
    ensure_folder(path.parent)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise explain(error, path, "append a record to") from error
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            line = b"\n" + line  # end a torn last line first, so this record stays whole
        try:
            written = 0
            while written < len(line):
                written += os.write(descriptor, line[written:])
            os.fsync(descriptor)
        except OSError as error:
            os.ftruncate(descriptor, size)
            raise explain(error, path, "append a record to") from error
    finally:
        os.close(descriptor)  # closing releases the lock


class LedgerBusy(RuntimeError):
    """Another process is running a grid into the same results file."""


class GridLock:
    """One runner per results file: a second `ablate` on the same file is refused at once
    (it would train the same runs again), with the process that holds the file named."""

    def __init__(self, results: Path):
        self.results = Path(results)
        self.path = self.results.with_name(f".{self.results.name}.lock")
        self.descriptor = None

    def __enter__(self) -> "GridLock":
        ensure_folder(self.path.parent)
        try:
            self.descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise explain(error, self.path, "create the lock file") from error
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.descriptor, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(self.descriptor)
            raise LedgerBusy(f"{self.results} is being written by another ablation run (process {holder}); "
                             "wait for it to finish, or write to another results file")
        os.ftruncate(self.descriptor, 0)
        os.pwrite(self.descriptor, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.descriptor)  # releases the lock; the empty lock file may stay
