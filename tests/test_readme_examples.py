"""Every fenced ```python block of README.md runs, each on its own in a fresh namespace, so the examples cannot rot.

The blocks that import torch or ultralytics (the weight-loading example) are ``slow``: importing torch and building
a YOLOv8n on both sides takes longer than the fast path should spend on one example.
"""

from __future__ import annotations

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks(path: str = README) -> list[str]:
    """The source of every fenced ```python block of a markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```$", open(path, encoding="utf-8").read(), re.M | re.S)


def _needs_torch(block: str) -> bool:
    return re.search(r"^\s*(import|from)\s+(torch|ultralytics)\b|^import .*\btorch\b", block, re.M) is not None


def _params():
    for i, block in enumerate(python_blocks()):
        marks = [pytest.mark.slow] if _needs_torch(block) else []
        yield pytest.param(block, id=f"block{i}", marks=marks)


def test_the_readme_has_its_examples():
    blocks = python_blocks()
    assert len(blocks) >= 3, blocks
    text = "\n".join(blocks)
    for name in ("route_target", "yolov8_loss", "load_ultralytics"):
        assert name in text, name


@pytest.mark.parametrize("block", list(_params()))
def test_readme_python_block_runs(block, monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    exec(compile(block, README, "exec"), {"__name__": "__readme__"})
