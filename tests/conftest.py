"""Shared test fixtures."""

import os

import jax
import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _label_cache_dir(tmp_path_factory):
    """``prepare_data`` caches parsed labels (``data.label_cache``): the suite's go to a temporary directory,
    not the user's ``~/.cache/jaxdet`` (subprocesses inherit it)."""
    os.environ.setdefault("JAXDET_CACHE_DIR", str(tmp_path_factory.mktemp("jaxdet_cache")))


@pytest.fixture
def x64():
    """Runs the test body with JAX's 64-bit mode on (float64 arrays stay float64)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions: one torch thread avoids OpenMP spin-wait stalls on a shared CPU (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
