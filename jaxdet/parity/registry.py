"""The parity cases of every loss family, as listed by ``python -m jaxdet.parity`` and tests/parity/test_cases.py.

Each family keeps its cases in its own module ``jaxdet.parity.cases_<family>`` with ``cases() -> list[ParityCase]``.
"""

from __future__ import annotations

import importlib

from jaxdet.parity.core import ParityCase

CASE_MODULES: tuple[str, ...] = (
    "jaxdet.parity.cases_boxes",
    "jaxdet.parity.cases_detection",
    "jaxdet.parity.cases_dense",
    "jaxdet.parity.cases_polygons",
    "jaxdet.parity.cases_hybrid",
    "jaxdet.parity.cases_yolov8",
    "jaxdet.parity.cases_yolo26",
    "jaxdet.parity.cases_obb",
    "jaxdet.parity.cases_yolo_model",
    "jaxdet.parity.cases_yolo_obb",
    "jaxdet.parity.cases_rotated_nms",
    "jaxdet.parity.cases_musgd",
)


def all_cases() -> list[ParityCase]:
    """Every registered case, in table order."""
    return [case for module in CASE_MODULES for case in importlib.import_module(module).cases()]
