"""Every registered parity case against its PyTorch reference, for the outputs and the input gradients:
float64 rel ≤ 1e-10, and jaxdet's float32 result within 1e-5 of the reference run in float64 on the same inputs
(or the case's own documented tolerances)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxdet.parity import all_cases, compare, format_table, run_case

# The YOLO network rows (whole-model VJPs, the slowest rows) run in tests/models/test_yolo.py.
CASES = [case for case in all_cases() if "_model_" not in case.name]
#: rows that take 5-20 s each on a 2-core CPU (the v8 loss at 8,400 anchors, MGIoU on many polygons, the hybrid
#: loss, TAL with many GTs): the fast path (``-m "not slow"``) runs the other rows of each family.
SLOW_ROWS = ("yolov8_loss", "mgiou_loss", "hybrid_polygon_loss (none)", "hybrid_polygon_loss (grad_norm)",
             "task_aligned_assign (G=300)", "musgd_", "yolo26_loss", "task_aligned_assign (topk=7", "obb_loss",
             "rotated_task_aligned_assign (G=300)")


def _param(case):
    return pytest.param(case, id=case.name, marks=pytest.mark.slow if case.name.startswith(SLOW_ROWS) else ())


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_parity(case):
    report = run_case(case, seed=0)
    assert report.passed(), "\n" + report.table()


def test_compare_detects_a_wrong_gradient():
    """The harness must fail a function whose value matches but whose gradient does not."""

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

    report = compare(lambda x: jnp.log(x - 1.0), lambda t: torch.log(t), np.array([0.5, 2.0]))
    assert report.errors[0].out_rel == float("inf")


def test_compare_rejects_bad_wrt():
    with pytest.raises(ValueError, match="wrt index 1"):
        compare(lambda x, y: x, lambda x, y: x, np.ones(3), np.ones(3, dtype=np.int32), wrt=(1,))


def test_float32_rows_are_judged_against_the_float64_reference():
    """jaxdet's log1p against a reference that computes log(1 + x), for x from 1e-7 to 1e-6. In float32,
    1 + x rounds to a multiple of 1.2e-7, so the reference is up to 6e-8 off, while jaxdet's value is accurate.
    The row keeps both numbers and passes on jaxdet's own error. The reverse pairing (jaxdet imprecise,
    reference exact) fails."""

    x = np.geomspace(1e-7, 1e-6, 9)
    accurate = compare(jnp.log1p, lambda t: torch.log(1 + t), x, dtypes=("float32",), tolerances={"float32": 1e-5})
    err = accurate.errors[0]
    assert err.out_rel > 1e-2  # the float32 reference's own rounding
    assert err.ref64_out_rel < 1e-6 and err.ref64_grad_rel < 1e-6
    assert accurate.passed()
    imprecise = compare(lambda v: jnp.log(1 + v), torch.log1p, x, dtypes=("float32",),
                        tolerances={"float32": 1e-5})
    assert imprecise.errors[0].ref64_out_rel > 1e-2
    assert not imprecise.passed()
    assert "FAIL" in format_table([imprecise])
    assert "/" in format_table([accurate])  # the float64-reference column is filled for float32 rows
