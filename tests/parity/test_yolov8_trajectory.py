"""jaxdet's YOLOv8n train step follows ultralytics' SGD trajectory in float64, step after step.

A single step's loss and gradients are compared in ``python -m jaxdet.parity`` (``yolov8n_model_loss``). Here
``train.step.make_train_step`` with the ``yolov8`` head's loss and optax SGD (Nesterov, weight decay) runs
four steps against ``DetectionModel`` + ``v8DetectionLoss`` + ``torch.optim.SGD`` from the same weights on the
same batch (:mod:`jaxdet.parity.yolov8_trajectory`). The largest parameter differences after steps 1–4 were
2e-16, 7e-16, 7e-15 and 6e-14 (``benchmarks/results/yolov8_trajectory.md``). When the inputs differed only by
float32 rounding, with the torch side's ground-truth boxes built in float32, the differences were 7e-11 after
step 1 and 4e-8 after step 4. The bound 1e-11 lies between the two.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from jaxdet.parity import torch_yolov8, train_twins  # noqa: E402
from jaxdet.parity import yolov8_trajectory as trajectory  # noqa: E402

pytestmark = pytest.mark.slow  # trains YOLOv8n for several steps beside ultralytics

STEPS = 4


def test_float64_trajectory_matches_ultralytics():
    cfg = train_twins.yolov8n_config(batch=2, image_size=64, optimizer="sgd")
    batch_np = train_twins.make_batch(cfg)
    weights = torch_yolov8.ultralytics_weights()
    j_loss, j_params = trajectory.jax_trajectory(cfg, weights, batch_np, steps=STEPS, dtype="float64")
    t_loss, t_params = trajectory.torch_trajectory(cfg, weights, batch_np, steps=STEPS, dtype="float64")
    assert len(t_params[0]) == 183  # every trained tensor of yolov8n (the DFL projection is frozen)
    first = {k: v.numpy() for k, v in weights.items() if k in t_params[0]}
    assert trajectory.max_difference(t_params[-1], first) > 1e-3  # the parameters moved
    for step in range(STEPS):
        assert trajectory.max_difference(j_params[step], t_params[step]) < 1e-11, step
    np.testing.assert_allclose(j_loss, t_loss, rtol=1e-6)  # jaxdet logs its loss in float32


def test_max_difference_names_missing_parameters():
    ref = {"a": np.zeros(2), "b": np.ones(3)}
    assert trajectory.max_difference({"a": np.array([0.0, 0.5]), "b": np.ones(3), "extra": np.zeros(1)}, ref) == 0.5
    with pytest.raises(ValueError, match="missing on the jaxdet side"):
        trajectory.max_difference({"a": np.zeros(2)}, ref)
