"""Every YOLOv8 ``python -m train`` command in README.md and train/README.md runs (at smoke size; see
``readme_runs``). A file of its own, so that its YOLOv8n compiles run beside the other README runs."""

from __future__ import annotations

import re

import pytest

from tests.train import readme_runs

pytestmark = pytest.mark.slow  # runs every YOLOv8 README command (YOLOv8n compiles)


def test_every_yolov8_readme_command_runs(tmp_path):
    out = readme_runs.run_readme_commands(tmp_path, "yolov8", check_user_data=False)
    # the bare `python -m train` (given only a --workdir here) trains the default YOLOv8n
    assert re.search(r'^RUN yolov8 \["--workdir", "[^"]*"\]$', out, re.M), out[-4000:]
