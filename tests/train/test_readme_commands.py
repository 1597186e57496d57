"""Every ``python -m train`` command in README.md and train/README.md runs (at smoke size), so none can rot:
the commands and the grid-head (YOLOv1, polygon) runs here, the YOLOv8 runs in ``test_readme_yolov8_commands``
(see ``readme_runs``)."""

from __future__ import annotations

import re

import pytest

from tests.train import readme_runs

pytestmark = pytest.mark.slow  # runs every grid-head README command in a subprocess


def test_the_readmes_have_the_commands_we_expect():
    commands, scripts = readme_runs.readme_commands()
    assert len(commands) >= 12 and len(scripts) == 1
    assert [] in commands  # the bare `python -m train`
    assert any("--config.data.name=voc" in c for c in commands)


def test_every_grid_head_readme_command_runs_and_every_user_data_config_validates(tmp_path):
    out = readme_runs.run_readme_commands(tmp_path, "grid", check_user_data=True)
    assert re.search(r"^RUN yolov1 ", out, re.M) and re.search(r"^RUN polygon ", out, re.M), out[-4000:]
