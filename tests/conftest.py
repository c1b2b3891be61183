import os

import pytest
import torch

from cbam_tutorial.settings import reset_settings

# Tests are small; two threads is the machine and keeps timings of CI steady.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Each test reads the environment anew (its monkeypatched variables included)."""
    reset_settings()
    yield
    reset_settings()
