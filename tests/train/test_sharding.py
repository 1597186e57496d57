"""Sharded train step: 8 simulated devices vs 1, and a checkpoint written on 8 devices continued on 4."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.train import trainproc as tp

pytestmark = pytest.mark.slow  # trains on 8 simulated devices in subprocesses

STEPS = 5


def test_8_devices_match_1_device_and_checkpoint_continues_on_4(tmp_path):
    one, eight, four = tmp_path / "one", tmp_path / "eight", tmp_path / "four"
    out1 = tp.run(one, f"--config.train.steps={STEPS}", devices=1)
    out8 = tp.run(eight, f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=3", devices=8)
    assert "devices: 1 (cpu)" in out1.stdout and "mesh {'data': 1}" in out1.stdout
    assert "devices: 8 (cpu)" in out8.stdout and "mesh {'data': 8}" in out8.stdout

    l1, l8 = tp.losses(one), tp.losses(eight)
    assert sorted(l1) == sorted(l8) == list(range(1, STEPS + 1))
    traj1 = np.array([l1[s] for s in range(1, STEPS + 1)])
    traj8 = np.array([l8[s] for s in range(1, STEPS + 1)])
    assert np.all(np.diff(traj1) != 0), traj1  # the model is actually training
    np.testing.assert_allclose(traj8, traj1, rtol=1e-5, atol=1e-7)
    p1, p8 = tp.params(one), tp.params(eight)
    assert sorted(p1) == sorted(p8)
    for k in p1:
        np.testing.assert_allclose(p8[k], p1[k], rtol=1e-4, atol=1e-6, err_msg=k)

    # Continue the 8-device checkpoint of step 3 on 4 devices.
    assert tp.checkpoint_steps(eight) == [3, 5]
    shutil.copytree(eight / "checkpoints" / "3", four / "checkpoints" / "3")
    out4 = tp.run(four, f"--config.train.steps={STEPS}", devices=4)
    assert "devices: 4 (cpu)" in out4.stdout
    assert "step 3 (written on 8 device(s), 1 process(es))" in out4.stdout, out4.stdout
    l4 = tp.losses(four)
    assert sorted(l4) == [4, 5]
    np.testing.assert_allclose([l4[4], l4[5]], [l8[4], l8[5]], rtol=1e-5, atol=1e-7)
    p4 = tp.params(four)
    for k in p8:
        np.testing.assert_allclose(p4[k], p8[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert tp.checkpoint_steps(four) == [3, 5]
