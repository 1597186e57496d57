"""A tiny stand-in task (model, loss, data) for the train-loop tests, and a runner.

Run as ``python -m tests.train.standin [--task standin|real] [--sigkill-at-step K] [--nan-at-steps I,J]
[--save-delay SECONDS] --workdir DIR [--config.x=y ...]``; it
honours the multi-host environment like ``python -m train`` and, on process 0, writes
``<workdir>/final_params.npz`` (flattened parameters) and ``<workdir>/summary.json``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import yolov1_shapes
from train import batches as batches_lib
from train import checkpoint as ckpt_lib
from train import cli, loop
from train import mesh as mesh_lib
from train.loop import to_host
from train.task import Task


def standin_config():

    c = yolov1_shapes.get_config()
    c.name = "standin"
    c.data.image_size = 16
    c.data.max_objects = "3"  # a string: the field's default is "auto" (ml_collections keeps its type)
    c.data.train_size = 64
    c.data.val_size = 16
    c.data.max_objects_per_image = 1
    c.model.grid_size = 4
    c.model.widths = (4,)
    c.model.depths = (0,)
    c.model.head_width = 8
    c.train.steps = 5
    c.train.batch_size = 8
    c.train.warmup_steps = 2
    c.train.log_every = 1
    c.train.eval_every = 0
    c.train.checkpoint_every = 0
    c.train.progress_bar = False
    c.eval.batch_size = 8
    c.eval.num_images = 16
    return c


class StandinSource:
    """Deterministic random-access raw examples: one bright square per image, box = its extent."""

    def __init__(self, n, size, max_objects, offset=0):
        self.n, self.size, self.m, self.offset = n, size, max_objects, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng([7, self.offset, int(i)])
        s = self.size
        img = rng.uniform(0, 0.2, (s, s, 3)).astype(np.float32)
        w = int(rng.integers(3, s // 2))
        x0, y0 = (int(v) for v in rng.integers(0, s - w, 2))
        img[y0 : y0 + w, x0 : x0 + w] += 0.7
        boxes = np.array([[x0, y0, x0 + w, y0 + w]], np.float32) / s
        return {
            "image": img,
            "boxes": boxes,
            "classes": np.zeros((1,), np.int32),
            "polygons": np.zeros((1, 4, 2), np.float32),
            "image_id": np.int32(i + self.offset),
        }


def standin_task(config):

    s, width = int(config.model.grid_size), int(config.model.widths[0])

    batch_norm = config.model.get("norm") == "batch"  # --config.model.norm=batch: batch statistics in the state

    class Tiny(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(3, width, (3, 3), strides=(2, 2), rngs=rngs)
            self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs) if batch_norm else None
            self.c2 = nnx.Conv(width, 5, (3, 3), rngs=rngs)

        def __call__(self, x):
            h = self.c1(x)
            h = nnx.relu(self.bn(h) if self.bn is not None else h)
            h = jax.image.resize(h, (h.shape[0], s, s, h.shape[-1]), "linear")
            return self.c2(h)

    def loss_fn(out, batch, *, step, state):
        pred_box = jax.nn.sigmoid(out[..., :4].mean((1, 2)))  # [N, 4]
        box = jnp.sum((pred_box - batch["boxes"][:, 0]) ** 2, -1)  # [N]
        obj = jnp.mean(jax.nn.sigmoid(out[..., 4]) ** 2, (1, 2))  # [N]
        loss = jnp.mean(box) + 0.5 * jnp.mean(obj)
        return loss, {"box": jnp.mean(box), "obj": jnp.mean(obj)}, state

    size, m = int(config.data.image_size), int(config.data.max_objects)
    return Task(
        build_model=Tiny,
        loss_fn=loss_fn,
        train_source=StandinSource(int(config.data.train_size), size, m),
        val_source=StandinSource(int(config.data.val_size), size, m, offset=10_000),
        augment=(lambda ex, rng: dict(ex, image=ex["image"] * rng.uniform(0.8, 1.0))) if config.data.augment else None,
    )


def flat_params(state) -> dict[str, np.ndarray]:
    """The parameters, and with ``train.ema`` the EMA (``ema...`` keys: params, model state, update count)."""

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state["params"])[0]:
        out[jax.tree_util.keystr(path)] = to_host(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.get("ema", {}))[0]:
        out["ema" + jax.tree_util.keystr(path)] = to_host(leaf)
    return out


def main(argv):
    task_kind, kill_step, nan_steps = "standin", None, set()
    save_delay = 0.0
    while argv[:1] and argv[0] in ("--task", "--sigkill-at-step", "--nan-at-steps", "--save-delay"):
        if argv[0] == "--task":
            task_kind = argv[1]
        elif argv[0] == "--save-delay":
            save_delay = float(argv[1])
        elif argv[0] == "--nan-at-steps":
            nan_steps = {int(s) for s in argv[1].split(",")}
        else:
            kill_step = int(argv[1])
        argv = argv[2:]
    if save_delay:
        # A slow disk: every checkpoint save first waits ``save_delay`` seconds.

        def slow_save(self, *args, _original=ckpt_lib.Checkpointer.save, **kwargs):
            time.sleep(save_delay)
            return _original(self, *args, **kwargs)

        ckpt_lib.Checkpointer.save = slow_save
    if nan_steps:
        # The batches of these step indices get one NaN pixel (a corrupt image): the loss turns non-finite.

        for cls in (batches_lib.LoaderBatches, batches_lib.StepBatcher):

            def poisoned(self, _original=cls.next):
                index = self.get_state()["step"]
                batch = _original(self)
                if index in nan_steps:
                    batch = dict(batch, image=batch["image"].copy())
                    batch["image"].flat[0] = np.nan
                return batch

            cls.next = poisoned
    if kill_step is not None:
        # Simulates a crash mid-training: SIGKILL this process when the batch of step index ``kill_step`` is
        # requested (the previous steps may still be running asynchronously).

        for cls in (batches_lib.LoaderBatches, batches_lib.StepBatcher):

            def next_batch(self, _original=cls.next):
                if self.get_state()["step"] == kill_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return _original(self)

            cls.next = next_batch

    config_given = any(a == "--config" or a.startswith("--config=") for a in argv)
    if task_kind == "standin" and not config_given:
        cli.load_config = lambda spec: (standin_config(), "standin")  # noqa: the stand-in base config
    config, _, workdir = cli.parse_args(argv)

    mesh_lib.maybe_initialize_distributed()

    task = standin_task(config) if task_kind == "standin" else None
    summary = loop.run(config, workdir, task=task, return_state=True)
    if jax.process_index() == 0:
        np.savez(os.path.join(workdir, "final_params.npz"), **flat_params(summary["state"]))


if __name__ == "__main__":
    main(sys.argv[1:])
