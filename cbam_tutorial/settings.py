"""Everything the package takes from its surroundings, read once into one object.

    settings = current_settings()            # read from the environment on first use
    configure(progress=False)                # arguments override the environment
    load_cifar10(settings.data_root)         # callers pass what they need explicitly

Six environment variables, each a field of Settings:

    CBAM_TUTORIAL_DATA              data_root  where data and checkpoints are cached
                                               (default: $XDG_CACHE_HOME/cbam-tutorial,
                                               else ~/.cache/cbam-tutorial)
    CBAM_TUTORIAL_CIFAR10_ARCHIVE   archive    an offline CIFAR-10 archive to read
                                               (default: none; torchvision downloads)
    CBAM_TUTORIAL_PROFILE           profile    the training profile when none is named
    CBAM_TUTORIAL_PROGRESS          progress   "0" hides progress bars, "1" shows them
                                               (default: shown in a terminal or notebook)
    CBAM_TUTORIAL_TRAIN_LOG         train_log  a JSON-lines file that the runs started by the
                                               command line, the grid runner and the book's
                                               helpers append their cost to (how chapters
                                               are timed)
    CBAM_TUTORIAL_FUSED             fused      "0" keeps CBAM off the compiled CPU kernel

Nothing is read when the package is imported: the environment is read by the first call
of current_settings(), and never again unless reset_settings() is called (tests do).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

VARIABLES = {"data_root": "CBAM_TUTORIAL_DATA", "archive": "CBAM_TUTORIAL_CIFAR10_ARCHIVE",
             "profile": "CBAM_TUTORIAL_PROFILE", "progress": "CBAM_TUTORIAL_PROGRESS",
             "train_log": "CBAM_TUTORIAL_TRAIN_LOG", "fused": "CBAM_TUTORIAL_FUSED"}


@dataclass(frozen=True)
class Settings:
    """The package's settings; see the module's docstring for each field's variable."""

    data_root: Path
    archive: Path | None = None
    profile: str | None = None
    progress: bool | None = None  # None: decide by where the output goes
    train_log: Path | None = None
    fused: bool = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from `environ` (default: os.environ); unset or empty variables give defaults."""
        environ = os.environ if environ is None else environ
        value = {field: environ.get(name) or None for field, name in VARIABLES.items()}
        for field in ("progress", "fused"):
            if value[field] not in (None, "0", "1"):
                raise ValueError(f"{VARIABLES[field]}={value[field]!r}: set it to 0 or 1, or unset it")
        cache = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
        return cls(
            data_root=Path(value["data_root"] or Path(cache) / "cbam-tutorial").expanduser(),
            archive=Path(value["archive"]).expanduser() if value["archive"] else None,
            profile=value["profile"],
            progress=None if value["progress"] is None else value["progress"] == "1",
            train_log=Path(value["train_log"]).expanduser() if value["train_log"] else None,
            fused=value["fused"] != "0")

    def shows_progress(self) -> bool:
        """Whether a caller of train() should ask for a progress bar: `progress` when set,
        else whether the output goes to a terminal or a notebook kernel (Jupyter, Colab).
        Builds of the book set CBAM_TUTORIAL_PROGRESS=0."""
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty() or "ipykernel" in sys.modules

    def source_of(self, field: str) -> str:
        """How a message names where `field` came from, e.g. "$CBAM_TUTORIAL_PROFILE"."""
        return f"${VARIABLES[field]}"


_current: Settings | None = None


def current_settings() -> Settings:
    """The settings in force: read from the environment at the first call, then kept."""
    global _current
    if _current is None:
        _current = Settings.from_environment()
    return _current


def configure(**changes) -> Settings:
    """Replace fields of the settings in force (arguments win over the environment)."""
    global _current
    unknown = set(changes) - {field.name for field in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"unknown settings {sorted(unknown)}; the fields are {list(VARIABLES)}")
    _current = dataclasses.replace(current_settings(), **changes)
    return _current


def reset_settings() -> None:
    """Forget the settings in force, so that the next call reads the environment again."""
    global _current
    _current = None


def environment_of(settings: Settings) -> dict[str, str]:
    """The environment variables that give `settings` to another process (e.g. a Ray task)."""
    return {VARIABLES[field]: ("1" if value else "0") if isinstance(value, bool) else str(value)
            for field, value in dataclasses.asdict(settings).items() if value is not None}
