"""YOLOv8n under data-parallel jit: 8 simulated devices give the 1-device trajectory, BatchNorm statistics
included (they are the global batch's, not a per-device batch's). float64 (see yolov8_devices.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainproc as tp  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yolov8_devices.py")


def _run(out, devices):
    proc = subprocess.run([sys.executable, SCRIPT, str(out)], env=tp.env_for(devices), capture_output=True,
                          text=True, timeout=900, cwd=tp.REPO)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return dict(np.load(out))


def test_8_devices_match_1_device_with_batch_statistics(tmp_path):
    one, eight = _run(tmp_path / "one.npz", 1), _run(tmp_path / "eight.npz", 8)
    assert int(one["devices"]) == 1 and int(eight["devices"]) == 8
    assert np.all(np.diff(one["losses"]) != 0), one["losses"]
    np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-12)
    keys = sorted(k for k in one if k not in ("losses", "devices"))
    assert keys == sorted(k for k in eight if k not in ("losses", "devices"))
    assert any(k.endswith("bn/var") for k in keys)
    for k in keys:
        assert eight[k].dtype == np.float64, k
        # normwise (max |a - b| / max |b|): an element near 0 has no meaningful elementwise relative error
        err = np.abs(eight[k] - one[k]).max() / np.abs(one[k]).max()
        assert err <= 1e-9, (k, err)  # measured: at most 8.3e-11 (BN biases); 2e-2 in float32
    # the statistics moved (per-device batch variances would differ from the global batch's, and so would the
    # train-mode outputs and every loss after the first forward pass)
    assert np.abs(one["model/0/bn/mean"]).max() > 0 and np.abs(one["model/0/bn/var"] - 1).max() > 0
