"""Shared test fixtures."""

import os

import jax
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture
def x64():
    """Runs the test body with JAX's 64-bit mode on (float64 arrays stay float64)."""
    with jax.enable_x64(True):
        yield
