"""Subprocess helpers for the train tests (each run in a fresh interpreter with its own device count)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = "tests.train.standin"  # run as a module from the repository root

#: ``python -m train`` flags: the YOLOv1 config (the default is YOLOv8n), and a tiny backbone for the grid heads
#: (YOLOv1, polygon), 32 px in, 4 x 4 cells out, which compiles in seconds.
YOLOV1 = ("--config", "configs/yolov1_shapes.py")
TINY_GRID_MODEL = (
    "--config.model.grid_size=4", "--config.model.widths=(8, 16)", "--config.model.depths=(0, 0)",
    "--config.model.head_width=16",
)


def env_for(devices: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def runner_cmd(workdir, *overrides, task="standin", extra=()):
    return [sys.executable, "-m", RUNNER, "--task", task, *extra, "--workdir", str(workdir), *overrides]


def run(workdir, *overrides, devices=1, task="standin", extra=(), timeout=240, check=True):
    proc = subprocess.run(
        runner_cmd(workdir, *overrides, task=task, extra=extra),
        env=env_for(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def records(workdir) -> list[dict]:
    """Every record of the run's ``metrics.jsonl``."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(workdir) -> dict[int, float]:
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "train":
                out[rec["step"]] = rec["loss"]
    return out


def params(workdir) -> dict[str, np.ndarray]:
    with np.load(os.path.join(workdir, "final_params.npz")) as z:
        return {k: z[k] for k in z.files}


def checkpoint_steps(workdir) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def long_run(workdir, log_path, *, extra=(), min_records=3):
    """A stand-in run of 10^6 steps in the background, yielded once it has logged ``min_records`` steps; killed
    on exit if still running. Its output goes to ``log_path``."""
    cmd = runner_cmd(workdir, "--config.train.steps=1000000", "--config.train.warmup_steps=10", extra=extra)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env_for(1), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.time() + 200
            metrics = os.path.join(workdir, "metrics.jsonl")
            while time.time() < deadline and proc.poll() is None:
                if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= min_records:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, open(log_path).read()[-3000:]
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
