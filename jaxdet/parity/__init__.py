"""JAX-vs-PyTorch parity: compare a jaxdet function with its PyTorch reference, values and input gradients.

``python -m jaxdet.parity`` prints the table for every function in the library that has a reference. torch is
imported lazily, only when a comparison runs.
"""

from jaxdet.parity.core import (
    ParityCase,
    ParityError,
    ParityReport,
    compare,
    format_table,
    run_case,
)
from jaxdet.parity.registry import CASE_MODULES, all_cases

__all__ = [
    "CASE_MODULES",
    "ParityCase",
    "ParityError",
    "ParityReport",
    "all_cases",
    "compare",
    "format_table",
    "run_case",
]
