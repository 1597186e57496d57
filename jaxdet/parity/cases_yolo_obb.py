"""Parity cases of the oriented-box YOLO networks (v8, 11, 26) against ultralytics' ``OBBModel(f"{name}.yaml",
nc=C)`` (``yolov8-obb.yaml``, ``yolo11-obb.yaml``, ``yolo26-obb.yaml`` at scale n).

The rows are those of :mod:`jaxdet.parity.cases_yolo_model` (same harness, random weights and BatchNorm
statistics, images, and inputs: the images and every parameter), for the ``task="obb"`` networks, whose levels
are ``[N, H/s, W/s, 4·reg_max + C + 1]`` with the raw output of the angle branch last (ultralytics' ``preds["angle"]``
is its decoded angle for ``OBB``, so the torch side takes the raw one by forward hooks:
:func:`jaxdet.parity.cases_yolo_model.torch_levels`):

- ``<name>_model_eval``: eval mode, the three per-level outputs (yolo26n-obb: both heads);
- ``<name>_model_train``: train mode, the outputs (yolo26n-obb: both heads, the one-to-one branches on detached
  features) and every updated running mean and variance;

with ``<name>`` = yolov8n_obb, yolo11n_obb, yolo26n_obb.
"""

from __future__ import annotations

from jaxdet.parity.cases_yolo_model import model_cases
from jaxdet.parity.core import ParityCase

#: the OBB models with rows, as ultralytics names their yaml (``<name>.yaml``).
OBB_MODELS = ("yolov8n-obb", "yolo11n-obb", "yolo26n-obb")


def cases() -> list[ParityCase]:
    return [case for name in OBB_MODELS for case in model_cases(name)]
