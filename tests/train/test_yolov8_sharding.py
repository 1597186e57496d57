"""YOLOv8n + the yolov8 head's loss under data-parallel jit: an 8-device mesh gives the 1-device trajectory,
BatchNorm statistics included (they are the global batch's, not a per-device batch's). float64, both meshes in
one subprocess with 8 simulated devices (see yolov8_devices.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.train import trainproc as tp

pytestmark = pytest.mark.slow  # trains YOLOv8 on 8 simulated devices in a subprocess

SCRIPT = "tests.train.yolov8_devices"  # run as a module from the repository root


def _normwise(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: an element near 0 has no meaningful elementwise relative error."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_8_devices_match_1_device_with_yolov8_loss_and_batch_statistics(tmp_path):
    out = tmp_path / "devices.npz"
    proc = subprocess.run([sys.executable, "-m", SCRIPT, str(out), "float64", "sgd"], env=tp.env_for(8),
                          capture_output=True, text=True, timeout=900, cwd=tp.REPO)
    assert proc.returncode == 0, proc.stderr[-5000:]
    res = dict(np.load(out))
    one = {k[3:]: v for k, v in res.items() if k.startswith("d1/")}
    eight = {k[3:]: v for k, v in res.items() if k.startswith("d8/")}
    assert sorted(one) == sorted(eight)
    losses = one.pop("losses")
    assert np.all(np.isfinite(losses)) and np.all(np.diff(losses) != 0), losses
    np.testing.assert_allclose(eight.pop("losses"), losses, rtol=1e-12)
    assert any(k.endswith("bn/var") for k in one) and any(k.startswith("step1/") for k in one)
    for k in one:
        if k.endswith("num_batches_tracked"):  # a train-mode forward per step
            assert int(one[k]) == int(eight[k]) == 3, k
            continue
        assert eight[k].dtype == np.float64, k
        assert np.abs(one[k]).max() > 0, k
        # step1/: the parameters after one SGD step, i.e. the first step's gradients on 1 vs 8 devices
        err = _normwise(eight[k], one[k])
        assert err <= 1e-9, (k, err)
    # the statistics moved (per-device batch moments would differ from the global batch's, and so would the
    # train-mode outputs and every loss after the first forward pass)
    assert np.abs(one["model/0/bn/mean"]).max() > 0 and np.abs(one["model/0/bn/var"] - 1).max() > 0
