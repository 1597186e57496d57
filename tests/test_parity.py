"""Every registered parity case against its PyTorch reference: float64 rel ≤ 1e-10 and float32 ≤ 1e-5
(or the case's own documented tolerance), for the outputs and the input gradients."""

import numpy as np
import pytest

from jaxdet.parity import all_cases, compare, format_table, run_case

# The YOLOv8 network rows (whole-model VJPs, the slowest rows) run in tests/test_yolov8_model.py.
CASES = [case for case in all_cases() if not case.name.startswith("yolov8n_model")]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_parity(case):
    report = run_case(case, seed=0)
    assert report.passed(), "\n" + report.table()


def test_compare_detects_a_wrong_gradient():
    """The harness must fail a function whose value matches but whose gradient does not."""
    import jax

    @jax.custom_vjp
    def wrong(x):
        return x**2

    wrong.defvjp(lambda x: (x**2, x), lambda x, g: (g * 3 * x,))
    report = compare(wrong, lambda t: t**2, np.linspace(0.5, 2.0, 7), tolerances={"float64": 1e-10})
    err64 = report.errors[0]
    assert err64.out_rel == 0.0
    assert err64.grad_rel > 0.3
    assert not report.passed()
    assert "FAIL" in format_table([report])


def test_compare_detects_nan():
    import jax.numpy as jnp
    import torch

    report = compare(lambda x: jnp.log(x - 1.0), lambda t: torch.log(t), np.array([0.5, 2.0]))
    assert report.errors[0].out_rel == float("inf")


def test_compare_rejects_bad_wrt():
    with pytest.raises(ValueError, match="wrt index 1"):
        compare(lambda x, y: x, lambda x, y: x, np.ones(3), np.ones(3, dtype=np.int32), wrt=(1,))
