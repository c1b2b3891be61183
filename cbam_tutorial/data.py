"""CIFAR-10 as uint8 arrays: the original through torchvision, or an offline JPEG copy.

    data = load_cifar10()            # finds or fetches a copy, decodes once, caches it
    data.train_images                # (50000, 32, 32, 3) uint8
    data.copy                        # {"source": "original" | "jpeg-offline", "sha256": ...}
    train, val = data.split()        # fixed 45,000 / 5,000 split of the training set

Where the data come from, in order (`root` is the data folder: the settings' data_root,
$CBAM_TUTORIAL_DATA, unless given):
1. a cache written by an earlier call (`root/cifar10-<source>.npz`);
2. the original, already downloaded by torchvision into `root/cifar-10-batches-py`;
3. an offline archive in the image-folder layout (`train/<class>/*.jpg`,
   `test/<class>/*.jpg`): the one passed as `archive`, else the settings' archive
   ($CBAM_TUTORIAL_CIFAR10_ARCHIVE), else `root/cifar10-jpeg.tar.gz` if it is there;
4. a torchvision download of the original (needs internet).
"""
from __future__ import annotations

import ast
import hashlib
import io
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .settings import VARIABLES, current_settings
from .storage import ensure_folder, write_atomically

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_PER_CLASS, TEST_PER_CLASS = 5000, 1000
VALIDATION_PER_CLASS = 500
ARCHIVE_ENV = VARIABLES["archive"]
ARCHIVE_NAME = "cifar10-jpeg.tar.gz"
# Per-channel mean and standard deviation of the original training set, in [0, 1] units.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class DataError(RuntimeError):
    """CIFAR-10 could not be found, read or checked; the message says what to do."""


@dataclass
class Split:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Cifar10:
    """The whole data set in memory, and which copy it came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    copy: dict = field(default_factory=dict)
    classes: tuple = CLASSES

    def split(self) -> tuple[Split, Split]:
        """The fixed split of the training set: (train 45,000, validation 5,000).

        The validation set is 500 images per class, chosen once by a fixed seed, so that
        every run and every chapter makes its choices on the same images.
        """
        order = np.random.default_rng(20181006).permutation(len(self.train_labels))
        val_index = np.concatenate([
            order[self.train_labels[order] == label][:VALIDATION_PER_CLASS] for label in range(10)
        ])
        mask = np.zeros(len(self.train_labels), dtype=bool)
        mask[val_index] = True
        val_index = np.flatnonzero(mask)
        train_index = np.flatnonzero(~mask)
        return (Split(self.train_images[train_index], self.train_labels[train_index]),
                Split(self.train_images[val_index], self.train_labels[val_index]))

    def train_all(self) -> Split:
        return Split(self.train_images, self.train_labels)

    def test(self) -> Split:
        return Split(self.test_images, self.test_labels)


def stratified_indices(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn by `seed`, interleaved by class
    (class 0, 1, ..., 9, then 0, 1, ... again): a fixed, balanced sample of a split whose
    images are stored class by class, as the offline copy's are.

    labels: (N,) integers -> (per_class * classes,) int64 indices.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise ValueError(f"class {label} has {len(members)} images, fewer than per_class={per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.stack(chosen, axis=1).reshape(-1).astype(np.int64)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_arrays(data: Cifar10) -> None:
    """Counts, shapes, dtypes and per-class balance of CIFAR-10; DataError if anything is off."""
    expected = (("train", data.train_images, data.train_labels, TRAIN_PER_CLASS),
                ("test", data.test_images, data.test_labels, TEST_PER_CLASS))
    for name, images, labels, per_class in expected:
        if images.shape != (10 * per_class, 32, 32, 3) or images.dtype != np.uint8:
            raise DataError(f"CIFAR-10 {name} images have shape {images.shape} and dtype {images.dtype}; "
                            f"expected ({10 * per_class}, 32, 32, 3) uint8")
        counts = np.bincount(labels, minlength=10)
        if len(counts) != 10 or not (counts == per_class).all():
            raise DataError(f"CIFAR-10 {name} labels are unbalanced: {counts.tolist()}; "
                            f"expected {per_class} per class")


def data_root(root: str | Path | None = None) -> Path:
    """`root`, else the settings' data folder ($CBAM_TUTORIAL_DATA, else the user's cache)."""
    return Path(root).expanduser() if root is not None else current_settings().data_root


def find_archive(root: Path, archive: str | Path | None = None) -> Path | None:
    """The offline archive to use, or None: `archive`, else the settings' archive
    ($CBAM_TUTORIAL_CIFAR10_ARCHIVE), else `root/cifar10-jpeg.tar.gz` if it exists."""
    named, source = (archive, "the archive passed") if archive is not None else (
        current_settings().archive, f"${ARCHIVE_ENV}")
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            raise DataError(f"{source} ({named}) is not a file; point it at {ARCHIVE_NAME} "
                            f"(train/<class>/*.jpg, test/<class>/*.jpg) or leave it unset")
        return path
    candidate = Path(root) / ARCHIVE_NAME
    return candidate if candidate.is_file() else None


def read_image_folder_archive(path: Path) -> Cifar10:
    """Decode a tar(.gz) in the layout train/<class>/*.jpg, test/<class>/*.jpg."""
    from PIL import Image

    found = {"train": [], "test": []}  # (member name, label, image)
    try:
        # one sequential pass: seeking backwards in a gzip stream decompresses it again
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3:
                    continue
                split, class_name = parts[-3], parts[-2]
                if split not in found or class_name not in CLASSES:
                    continue
                with Image.open(io.BytesIO(archive.extractfile(member).read())) as image:
                    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
                found[split].append((member.name, CLASSES.index(class_name), pixels))
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise DataError(
            f"the CIFAR-10 archive {path} is corrupt or unreadable ({error}); delete it and copy "
            f"it again, or remove it and set up internet access so that torchvision can download "
            f"the original"
        ) from error
    arrays = {}
    for split, entries in found.items():
        if not entries:
            raise DataError(f"the archive {path} has no {split}/<class>/*.jpg images; expected the "
                            f"image-folder layout train/<class>/*.jpg and test/<class>/*.jpg")
        entries.sort(key=lambda entry: entry[0])  # a fixed order, whatever the archive's
        arrays[split] = (np.stack([e[2] for e in entries]), np.asarray([e[1] for e in entries], dtype=np.int64))
    data = Cifar10(*arrays["train"], *arrays["test"],
                   copy={"source": "jpeg-offline", "archive": path.name, "sha256": _sha256(path)})
    check_arrays(data)
    return data


def read_torchvision(root: Path, download: bool) -> Cifar10:
    """The original CIFAR-10 through torchvision (downloading it into `root` if asked)."""
    from torchvision.datasets import CIFAR10

    train = CIFAR10(str(root), train=True, download=download)
    test = CIFAR10(str(root), train=False, download=download)
    if tuple(train.classes) != CLASSES:
        raise DataError(f"torchvision's CIFAR-10 classes are {train.classes}; expected {CLASSES}")
    data = Cifar10(train.data, np.asarray(train.targets, dtype=np.int64),
                   test.data, np.asarray(test.targets, dtype=np.int64),
                   copy={"source": "original", "archive": "cifar-10-python.tar.gz"})
    check_arrays(data)
    return data


def _cache_path(root: Path, source: str) -> Path:
    return Path(root) / f"cifar10-{source}.npz"


def _content_digest(data: Cifar10) -> str:
    """sha256 of the arrays themselves: a cache whose pixels or labels were altered is noticed."""
    digest = hashlib.sha256()
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _write_cache(data: Cifar10, root: Path) -> None:
    def write(handle):
        np.savez(handle, train_images=data.train_images, train_labels=data.train_labels,
                 test_images=data.test_images, test_labels=data.test_labels,
                 copy=np.asarray(repr(sorted(data.copy.items()))), content_sha256=np.asarray(_content_digest(data)))

    write_atomically(_cache_path(root, data.copy["source"]), write)


def _read_cache(path: Path) -> tuple[Cifar10 | None, str | None]:
    """(data, None) from a sound cache, or (None, what is wrong with it)."""
    try:
        with np.load(path) as arrays:
            copy = dict(ast.literal_eval(str(arrays["copy"])))
            data = Cifar10(arrays["train_images"], arrays["train_labels"],
                           arrays["test_images"], arrays["test_labels"], copy=copy)
            recorded = str(arrays["content_sha256"]) if "content_sha256" in arrays.files else None
    except Exception as error:  # torn, truncated, not an npz at all
        return None, f"it cannot be read ({type(error).__name__}: {error})"
    try:
        check_arrays(data)
    except DataError as error:
        return None, str(error)
    if recorded is None:
        return None, "it was written by an older version without a checksum"
    if _content_digest(data) != recorded:
        return None, "its images or labels no longer match the checksum written with them (altered)"
    return data, None


def _choose_source(root: Path, source: str, archive: str | Path | None) -> str:
    if source != "auto":
        return source
    if archive is not None or current_settings().archive is not None:
        return "jpeg-offline"
    if _cache_path(root, "original").is_file() or (root / "cifar-10-batches-py").is_dir():
        return "original"
    if _cache_path(root, "jpeg-offline").is_file() or find_archive(root) is not None:
        return "jpeg-offline"
    return "original"  # nothing here: download it


def load_cifar10(root: str | Path | None = None, source: str = "auto",
                 archive: str | Path | None = None) -> Cifar10:
    """CIFAR-10 from the first place that has it (see the module's docstring).

    root: the data folder (default: data_root()). source: "auto", "original" (torchvision,
    downloading if needed) or "jpeg-offline" (the archive found by find_archive).
    archive: the offline archive's path, if not the settings' one.
    """
    if source not in ("auto", "original", "jpeg-offline"):
        raise ValueError(f"unknown source {source!r}; choose one of 'auto', 'original', 'jpeg-offline'")
    root = ensure_folder(data_root(root))
    source = _choose_source(root, source, archive)
    cache = _cache_path(root, source)
    if cache.is_file():
        data, problem = _read_cache(cache)
        if data is not None and source == "jpeg-offline":
            found = find_archive(root, archive)
            if found is not None and _sha256(found) != data.copy.get("sha256"):
                data, problem = None, f"it was made from another archive than {found}"
        if data is not None:
            return data
        warnings.warn(f"the CIFAR-10 cache {cache} is not usable: {problem}; rebuilding it from its source",
                      RuntimeWarning, stacklevel=2)
    if source == "jpeg-offline":
        found = find_archive(root, archive)
        if found is None:
            unusable = f"the cache {cache} is not usable and " if cache.is_file() else ""
            raise DataError(f"{unusable}no offline CIFAR-10 archive was found to build it from: set "
                            f"{ARCHIVE_ENV} to the path of {ARCHIVE_NAME} or copy it to {root / ARCHIVE_NAME}")
        data = read_image_folder_archive(found)
    else:
        try:
            data = read_torchvision(root, download=True)
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"CIFAR-10 is not in {root} and could not be downloaded ({error}). Either connect "
                f"to the internet (torchvision downloads the original), or copy the offline "
                f"archive {ARCHIVE_NAME} to {root / ARCHIVE_NAME}, or set {ARCHIVE_ENV} to its path."
            ) from error
    _write_cache(data, root)
    return data
