"""The one settings object: read from the environment once, overridden by arguments."""
from pathlib import Path

import pytest

from cbam_tutorial import settings as settings_module
from cbam_tutorial.settings import Settings, configure, current_settings, reset_settings


def test_every_variable_becomes_its_field():
    environ = {"CBAM_TUTORIAL_DATA": "/data/cifar", "CBAM_TUTORIAL_CIFAR10_ARCHIVE": "/x/c.tar.gz",
               "CBAM_TUTORIAL_PROFILE": "cpu", "CBAM_TUTORIAL_PROGRESS": "0",
               "CBAM_TUTORIAL_TRAIN_LOG": "/tmp/log.jsonl", "CBAM_TUTORIAL_FUSED": "0"}
    assert Settings.from_environment(environ) == Settings(
        data_root=Path("/data/cifar"), archive=Path("/x/c.tar.gz"), profile="cpu", progress=False,
        train_log=Path("/tmp/log.jsonl"), fused=False)
    assert set(settings_module.VARIABLES.values()) == set(environ)


def test_defaults_follow_the_users_cache_folder():
    assert Settings.from_environment({"XDG_CACHE_HOME": "/cache"}) == Settings(data_root=Path("/cache/cbam-tutorial"))
    plain = Settings.from_environment({})
    assert plain.data_root == Path("~/.cache/cbam-tutorial").expanduser()
    assert (plain.archive, plain.profile, plain.progress, plain.train_log, plain.fused) == (None, None, None, None, True)
    assert Settings.from_environment({"CBAM_TUTORIAL_PROGRESS": ""}).progress is None  # empty = unset


@pytest.mark.parametrize("variable", ["CBAM_TUTORIAL_PROGRESS", "CBAM_TUTORIAL_FUSED"])
def test_a_switch_with_another_value_than_0_or_1_is_refused(variable):
    with pytest.raises(ValueError, match=f"{variable}='yes': set it to 0 or 1, or unset it"):
        Settings.from_environment({variable: "yes"})


def test_read_once_then_kept_until_reset(monkeypatch):
    monkeypatch.setenv("CBAM_TUTORIAL_PROFILE", "cpu")
    assert current_settings().profile == "cpu"
    monkeypatch.setenv("CBAM_TUTORIAL_PROFILE", "quick")
    assert current_settings().profile == "cpu"
    reset_settings()
    assert current_settings().profile == "quick"


def test_arguments_override_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CBAM_TUTORIAL_DATA", str(tmp_path / "from-env"))
    assert configure(data_root=tmp_path / "from-code").data_root == tmp_path / "from-code"
    assert current_settings().data_root == tmp_path / "from-code"
    with pytest.raises(TypeError, match="unknown settings \\['colour'\\]"):
        configure(colour="blue")


def test_progress_bars_follow_the_setting_else_where_the_output_goes(monkeypatch):
    import sys

    assert Settings(data_root=Path("."), progress=False).shows_progress() is False
    assert Settings(data_root=Path("."), progress=True).shows_progress() is True
    unset = Settings(data_root=Path("."))
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert unset.shows_progress() is False  # a log file or a pipe
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert unset.shows_progress() is True  # a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert unset.shows_progress() is True  # a notebook kernel (Jupyter, Colab)
