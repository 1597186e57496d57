"""YOLOv8 loss, task-aligned assignment + loss forward + backward: jaxdet jit vs ultralytics v8DetectionLoss.

Rows: batch 16, 640-px images (8,400 anchors at strides 8/16/32), 80 classes, 10 / 100 / 300 GT boxes per image;
jaxdet ``jax.jit(jax.value_and_grad(yolov8_loss(...).total))`` against ultralytics 8.4.190's
``v8DetectionLoss.get_assigned_targets_and_loss`` + ``backward()`` (eager and ``torch.compile``), both from the
raw head outputs ``[16, 8400, 64 + 80]`` and the same ground truth, float32.

Peak memory at 1,000 GT per image (batch 16, 8,400 anchors, 80 classes), each side in a fresh subprocess running
its first forward + backward (jaxdet: compiled beforehand): the peak resident set during the step (``VmHWM`` of
``/proc/self/status``, reset just before it through ``/proc/self/clear_refs``) minus the resident set before it,
inputs, model and compiled code already in memory; for jaxdet also XLA's own account of the compiled step
(``memory_analysis()``: temporaries, and temporaries + arguments + outputs); on a GPU also the device's peak
(JAX ``memory_stats()["peak_bytes_in_use"]``, torch ``max_memory_allocated()``).

    python -m benchmarks.yolov8_loss            # writes benchmarks/results/yolov8_loss.md
    python -m benchmarks.yolov8_loss --quick    # smoke test: 2 images, 256 px, 10 classes, 3 repeats

torch and ultralytics are imported inside :func:`torch_step` and :func:`memory_child`: the jaxdet side's memory
process imports this module and must not load them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from benchmarks._timing import BenchSpec, to_torch
from jaxdet.losses.yolov8 import yolov8_loss
from jaxdet.parity.torch_yolov8 import detection_model, ultralytics_batch
from jaxdet.tal import make_anchor_points

STRIDES = (8, 16, 32)
REG_MAX = 16
ROOT = Path(__file__).resolve().parent.parent


def make_inputs(batch: int, image: int, classes: int, num_gt: int, seed: int = 0):
    """``(outputs [B, A, 64 + C], gt_labels [B, G], gt_boxes [B, G, 4] px, valid [B, G])``, float32.

    Every image has exactly ``num_gt`` GTs with sides from 4 px to half the image (log-uniform), inside it."""
    rng = np.random.default_rng(seed)
    anchors = sum((image // s) ** 2 for s in STRIDES)
    outputs = rng.normal(0, 1, (batch, anchors, 4 * REG_MAX + classes)).astype(np.float32)
    outputs[..., 4 * REG_MAX :] -= 4.0
    size = np.exp(rng.uniform(np.log(4.0), np.log(image / 2), (batch, num_gt, 2)))
    centre = rng.uniform(size / 2, image - size / 2)
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=-1).astype(np.float32)
    labels = rng.integers(0, classes, (batch, num_gt)).astype(np.int32)
    return outputs, labels, boxes, np.ones((batch, num_gt), bool)


def jax_step(batch: int, image: int, classes: int, num_gt: int):
    """``(step, outputs)``: the jitted jaxdet forward + backward and its argument."""
    anchors = make_anchor_points([(image // s, image // s) for s in STRIDES], STRIDES)
    outputs, labels, boxes, valid = (jnp.asarray(x) for x in make_inputs(batch, image, classes, num_gt))

    def total(x):
        return yolov8_loss(x, anchors.points, anchors.strides, labels, boxes, valid).total

    return jax.jit(jax.value_and_grad(total)), outputs


def torch_step(batch: int, image: int, classes: int, num_gt: int, compiled: bool):
    """A no-argument ultralytics forward + backward on :func:`_timing.torch_device`."""
    import torch  # noqa: PLC0415 - not in the jaxdet memory process
    from ultralytics.utils.loss import v8DetectionLoss  # noqa: PLC0415 - not in the jaxdet memory process

    device = to_torch(np.zeros(1)).device
    outputs, labels, boxes, valid = make_inputs(batch, image, classes, num_gt)
    criterion = v8DetectionLoss(detection_model(classes).to(device))
    gt = ultralytics_batch(torch.from_numpy(labels), torch.from_numpy(boxes), torch.from_numpy(valid), image)
    gt = {k: v.to(device) for k, v in gt.items()}
    feats = [torch.zeros(batch, 1, image // s, image // s, device=device) for s in STRIDES]
    x = to_torch(outputs).requires_grad_(True)

    def loss(x):
        preds = {"boxes": x[..., : 4 * REG_MAX].permute(0, 2, 1), "scores": x[..., 4 * REG_MAX :].permute(0, 2, 1),
                 "feats": feats}
        return criterion.get_assigned_targets_and_loss(preds, gt)[1].sum()

    loss = torch.compile(loss) if compiled else loss

    def step():
        x.grad = None
        value = loss(x)
        value.backward()
        return value

    return step


def specs(batch: int, image: int, classes: int, gts: tuple[int, ...]) -> list[BenchSpec]:
    anchors = sum((image // s) ** 2 for s in STRIDES)
    return [
        BenchSpec(
            f"assign + loss, B={batch}, {anchors:,} anchors, {classes} classes, {g} GT/image",
            lambda g=g: (lambda step, x: lambda: step(x))(*jax_step(batch, image, classes, g)),
            lambda compiled, g=g: torch_step(batch, image, classes, g, compiled),
        )
        for g in gts
    ]


# ------------------------------------------------------------------------------------------------ memory


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(key)


def _peak_growth(step) -> int:
    """Bytes by which the resident set peaks above its level before ``step()`` (Linux ``clear_refs`` 5)."""
    before = _proc_status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current VmRSS
    step()
    return _proc_status_bytes("VmHWM") - before


def memory_child(side: str, batch: int, image: int, classes: int, num_gt: int) -> dict:
    """Runs in a fresh process: the first forward + backward of ``side``, measured (after a warm-up, allocators
    re-use their freed memory and the resident set would not show the step's temporaries again)."""
    if side == "jaxdet":
        jitted, outputs = jax_step(batch, image, classes, num_gt)
        compiled = jitted.lower(outputs).compile()
        result = {"rss_growth": _peak_growth(lambda: jax.block_until_ready(compiled(outputs)))}
        device = jax.devices()[0]
        if device.platform != "cpu" and device.memory_stats():
            result["device_peak"] = device.memory_stats().get("peak_bytes_in_use")
        analysis = compiled.memory_analysis()
        if analysis is not None:
            result["xla_temp"] = analysis.temp_size_in_bytes
            result["xla_total"] = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
                                   + analysis.output_size_in_bytes)
        return result
    import torch  # noqa: PLC0415 - not in the jaxdet memory process

    step = torch_step(batch, image, classes, num_gt, compiled=False)
    if to_torch(np.zeros(1)).device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        result = {"rss_growth": _peak_growth(step), "device_peak": torch.cuda.max_memory_allocated()}
        return result
    return {"rss_growth": _peak_growth(step)}


def measure_memory(batch: int, image: int, classes: int, num_gt: int) -> dict[str, dict]:
    results = {}
    for side in ("jaxdet", "ultralytics"):
        code = (
            "import json; from benchmarks import yolov8_loss as b; "
            "print('RESULT', json.dumps(b.memory_child(%r, %d, %d, %d, %d)))"
            % (side, batch, image, classes, num_gt)
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "YOLO_OFFLINE": "1"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            results[side] = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            results[side] = json.loads(line[0][len("RESULT "):])
        print(side, results[side], flush=True)
    return results


def _gib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**30:.2f} GiB"


def memory_table(results: dict[str, dict], batch: int, image: int, classes: int, num_gt: int) -> str:
    anchors = sum((image // s) ** 2 for s in STRIDES)
    lines = [
        f"\nPeak memory of one assign + loss forward + backward at {num_gt:,} GT/image (B={batch}, {anchors:,} "
        f"anchors, {classes} classes, float32), each side in a fresh process, its first call (jaxdet compiled "
        "beforehand): peak resident "
        "set during the step (`VmHWM`, reset through `/proc/self/clear_refs` just before) minus the resident "
        "set before it; for jaxdet also XLA's `memory_analysis()` of the compiled step (temporaries; "
        "temporaries + arguments + outputs).\n",
        "| side | peak RSS growth | XLA temporaries | XLA total | GPU peak (JAX: peak_bytes_in_use; torch: "
        "max_memory_allocated) |",
        "|---|---:|---:|---:|---:|",
    ]
    for side, r in results.items():
        if "error" in r:
            lines.append(f"| {side} | failed: {r['error']} | — | — | — |")
        else:
            lines.append(f"| {side} | {_gib(r['rss_growth'])} | {_gib(r.get('xla_temp'))} "
                         f"| {_gib(r.get('xla_total'))} | {_gib(r.get('device_peak'))} |")
    return "\n".join(lines) + "\n"


def _add_arguments(p) -> None:
    p.add_argument("--no-memory", action="store_true", help="skip the 1,000-GT peak-memory subprocesses")


def run(args) -> str:
    if args.quick:
        batch, image, classes, gts, memory_gt = 2, 256, 10, (10, 100), 200
    else:
        batch, image, classes, gts, memory_gt = 16, 640, 80, (10, 100, 300), 1000
    title = "YOLOv8 loss: task-aligned assignment + v8 loss, forward + backward (benchmarks/yolov8_loss.py)"
    markdown = _timing.run_table(title, specs(batch, image, classes, gts), args)
    if not args.no_memory:
        markdown += memory_table(measure_memory(batch, image, classes, memory_gt), batch, image, classes, memory_gt)
    return markdown


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="yolov8_loss.md", add_arguments=_add_arguments, argv=argv)


if __name__ == "__main__":
    main()
