"""CIFAR-10 loading: real data, the fixed split, and clear errors for missing or corrupt copies."""
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from cbam_tutorial import data as cifar
from cbam_tutorial.data import CLASSES, DataError, load_cifar10, read_image_folder_archive


@pytest.fixture(scope="session")
def cifar10():
    return load_cifar10()


def test_real_data_counts_and_classes(cifar10):
    assert cifar10.train_images.shape == (50_000, 32, 32, 3) and cifar10.train_images.dtype == np.uint8
    assert cifar10.test_images.shape == (10_000, 32, 32, 3)
    assert np.bincount(cifar10.train_labels).tolist() == [5000] * 10
    assert np.bincount(cifar10.test_labels).tolist() == [1000] * 10
    assert cifar10.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                               "ship", "truck")
    assert cifar10.copy["source"] in ("original", "jpeg-offline")
    # real photographs, not blank or constant arrays
    assert 100 < cifar10.train_images.mean() < 140 and cifar10.train_images.std() > 50


def test_fixed_validation_split(cifar10):
    train, val = cifar10.split()
    again_train, again_val = cifar10.split()
    assert len(train) == 45_000 and len(val) == 5_000
    assert np.bincount(val.labels).tolist() == [500] * 10
    np.testing.assert_array_equal(val.images, again_val.images)
    # disjoint: no validation image appears in the training split
    train_keys = {image.tobytes() for image in train.images}
    overlap = sum(image.tobytes() in train_keys for image in val.images)
    assert overlap <= 2  # CIFAR-10 itself holds a few exact duplicates; a leak would be thousands


def _write_archive(path, per_class: int, classes=CLASSES, corrupt_bytes=False):
    with tarfile.open(path, "w:gz") as archive:
        for split in ("train", "test"):
            for label, name in enumerate(classes):
                for index in range(per_class):
                    buffer = io.BytesIO()
                    Image.new("RGB", (32, 32), (label * 20, index, 0)).save(buffer, format="JPEG")
                    payload = buffer.getvalue()[:40] if corrupt_bytes else buffer.getvalue()
                    info = tarfile.TarInfo(f"cifar10/{split}/{name}/{index:04d}.jpg")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))


def test_incomplete_archive_is_rejected(tmp_path):
    path = tmp_path / "small.tar.gz"
    _write_archive(path, per_class=2)
    with pytest.raises(DataError, match=r"expected \(50000, 32, 32, 3\) uint8"):
        read_image_folder_archive(path)


def test_truncated_archive_says_what_to_do(tmp_path):
    path = tmp_path / "cifar10-jpeg.tar.gz"
    _write_archive(path, per_class=2)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="corrupt or unreadable .*delete it and copy it again"):
        read_image_folder_archive(path)


def test_undecodable_image_says_what_to_do(tmp_path):
    path = tmp_path / "cifar10-jpeg.tar.gz"
    _write_archive(path, per_class=1, corrupt_bytes=True)
    with pytest.raises(DataError, match="corrupt or unreadable"):
        read_image_folder_archive(path)


def test_wrong_layout(tmp_path):
    path = tmp_path / "flat.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("images/0001.jpg")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(DataError, match="no train/<class>/\\*.jpg images"):
        read_image_folder_archive(path)


def test_missing_archive_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cifar.ARCHIVE_ENV, str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(DataError, match=r"\$CBAM_TUTORIAL_CIFAR10_ARCHIVE \(.*nowhere.tar.gz\) is not a file"):
        load_cifar10(root=tmp_path)


def test_missing_archive_passed_as_an_argument_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cifar.ARCHIVE_ENV, str(tmp_path / "from-the-environment.tar.gz"))
    with pytest.raises(DataError, match=r"the archive passed \(.*passed.tar.gz\) is not a file"):
        load_cifar10(root=tmp_path, archive=tmp_path / "passed.tar.gz")


def test_the_package_looks_for_an_archive_only_where_it_is_told(tmp_path, monkeypatch):
    """No search of this project's own folders: the settings' archive, else root/."""
    monkeypatch.delenv(cifar.ARCHIVE_ENV, raising=False)
    assert cifar.find_archive(tmp_path) is None
    (tmp_path / cifar.ARCHIVE_NAME).write_bytes(b"")
    assert cifar.find_archive(tmp_path) == tmp_path / cifar.ARCHIVE_NAME


def test_no_copy_anywhere_and_no_internet(tmp_path, monkeypatch):
    monkeypatch.delenv(cifar.ARCHIVE_ENV, raising=False)
    monkeypatch.setattr(cifar, "find_archive", lambda root, archive=None: None)

    def offline(root, download):
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar, "read_torchvision", offline)
    with pytest.raises(DataError, match="could not be downloaded .*connect to the internet.*or copy the "
                                        "offline archive"):
        load_cifar10(root=tmp_path)


def test_torn_cache_is_rebuilt(tmp_path, monkeypatch, cifar10):
    archive = cifar.find_archive(cifar.data_root())
    if archive is None or cifar10.copy["source"] != "jpeg-offline":
        pytest.skip("needs the offline archive the cached copy was made from")
    (tmp_path / "cifar10-jpeg-offline.npz").write_bytes(b"not a cache")
    monkeypatch.setattr(cifar, "read_image_folder_archive", lambda path: cifar10)
    monkeypatch.setattr(cifar, "find_archive", lambda root, archive_=None: archive)
    monkeypatch.delenv(cifar.ARCHIVE_ENV, raising=False)
    with pytest.warns(RuntimeWarning, match="cifar10-jpeg-offline.npz is not usable: it cannot be read"):
        assert load_cifar10(root=tmp_path, source="jpeg-offline") is cifar10
    rebuilt = load_cifar10(root=tmp_path, source="jpeg-offline")  # now read from the new cache
    np.testing.assert_array_equal(rebuilt.test_labels, cifar10.test_labels)


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown source 'kaggle'"):
        load_cifar10(source="kaggle")
