"""Multi-host: 2 processes × 2 CPU devices (gloo) give the same parameters as 1 process × 4 devices."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.train import trainproc as tp

pytestmark = pytest.mark.slow  # trains in two processes

STEPS = 3


def test_two_processes_match_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    overrides = (f"--config.train.steps={STEPS}",)
    out1 = tp.run(single, *overrides, devices=4)
    assert "devices: 4 (cpu) in 1 process(es)" in out1.stdout

    port = tp.free_port()
    procs = []
    for pid in range(2):
        env = tp.env_for(
            2, {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(pid)}
        )
        procs.append(
            subprocess.Popen(
                tp.runner_cmd(multi, *overrides),
                env=env,
                cwd=tp.REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, f"{so[-3000:]}\n{se[-5000:]}"
    assert "devices: 4 (cpu) in 2 process(es)" in outs[0][0]

    l1, l2 = tp.losses(single), tp.losses(multi)
    assert sorted(l1) == sorted(l2) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([l2[s] for s in l1], [l1[s] for s in l1], rtol=1e-6, atol=1e-8)
    p1, p2 = tp.params(single), tp.params(multi)
    assert sorted(p1) == sorted(p2) and p1
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert tp.checkpoint_steps(multi) == [STEPS]
