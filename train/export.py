"""Hand a trained YOLO back: ``python -m train.export --workdir RUN [--out FILE] [--weights ema|raw]``.

Usage::

    python -m train.export --workdir workdir/yolov8n_shapes [--out model.pt] [--weights ema|raw] [--batch-size 1]
        [--score-threshold 0.25] [--iou-threshold IOU] [--max-detections D]

It restores the run's latest checkpoint (the EMA's weights by default, ``--weights raw`` for the trained ones) and
writes two files (default ``RUN/export/<model name>.pt``):

* ``FILE`` (``.pt``): an ultralytics checkpoint in ultralytics' own format (``{"model": None, "ema": DetectionModel,
  "train_args", "date", "version", ...}``, the model float32 rather than ultralytics' half precision, so nothing is
  rounded): the network built from its yaml (``yolov8n.yaml``, ``yolo11n.yaml``, ``yolo26n.yaml``: the head's
  model, whatever its version) holding the run's parameters and BatchNorm statistics
  (:func:`jaxdet.models.ultralytics_io.export_ultralytics`), with the run's class names. ``ultralytics.YOLO(FILE)``
  loads it, predicts and validates with it, and its exporters take it on to ONNX, TensorRT, TFLite.
* ``FILE`` with the suffix ``.jax_export``: a ``jax.export`` serialised inference function (StableHLO with the
  weights as constants): ``images`` uint8 ``[B, S, S, 3]`` (RGB, letterboxed to the run's ``data.image_size`` S as
  :func:`jaxdet.data.letterbox.letterbox_image` does) -> ``boxes`` float32 ``[B, D, 4]`` (xyxy pixels of the
  letterboxed image, clipped to it), ``scores [B, D]``, ``classes`` int32 ``[B, D]``, ``valid`` bool ``[B, D]`` (D =
  ``--max-detections``; the decode and single-label NMS of ``python -m train.predict``). A JAX service runs it
  without jaxdet::

      exp = jax.export.deserialize(open("model.jax_export", "rb").read())
      boxes, scores, classes, valid = exp.call(images)

  and ``FILE`` with the suffix ``.json`` lists the class names, the image size, the batch and the thresholds.

Errors (:class:`ExportError`, exit status 2) name what is wrong: a workdir without ``config.json`` or checkpoints, a
head whose model is no ultralytics YOLO, a checkpoint without an EMA under ``--weights ema``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from train import predict as predict_lib
from train.task import decode_options

SUFFIX_FUNCTION = ".jax_export"


class ExportError(ValueError):
    """A workdir or option that export cannot use; the message names it."""


def restore_model(workdir: str, *, weights: str = "ema") -> tuple[Any, Any, nnx.Module, int]:
    """``(config, head, model, step)``: the run's model (eval mode) with the EMA's or the raw weights of its latest
    checkpoint."""
    if weights not in ("ema", "raw"):
        raise ExportError(f"--weights {weights!r}: expected ema or raw")
    try:
        config, head, graphdef, state, step = predict_lib.restore_latest(workdir)
    except predict_lib.PredictError as err:
        raise ExportError(str(err)) from None
    if weights == "ema" and "ema" not in state:
        raise ExportError("--weights ema: the run has no EMA (train.ema=False); pass --weights raw")
    source = state["ema"] if weights == "ema" else state
    model = nnx.merge(graphdef, source["params"], source["model_state"])
    model.eval()
    return config, head, model, step


def ultralytics_checkpoint(model: nnx.Module, class_names: Sequence[str], *, image_size: int) -> dict[str, Any]:
    """ultralytics' checkpoint dict of a jaxdet YOLO (any version): ``DetectionModel(<name>.yaml)`` with its weights.

    Raises:
      ExportError: when ``model`` is not an ultralytics YOLO (a head without ``version``).
    """
    import torch  # noqa: PLC0415 - optional dependency: only the .pt export needs torch and ultralytics
    import ultralytics  # noqa: PLC0415 - as above
    from ultralytics.nn.tasks import DetectionModel  # noqa: PLC0415 - as above

    from jaxdet.models.ultralytics_io import export_ultralytics  # noqa: PLC0415 - torch path only

    if not hasattr(model, "version"):
        raise ExportError(f"the run's model ({type(model).__name__}) is no ultralytics YOLO: only the YOLO heads "
                          "export to an ultralytics checkpoint")
    net = DetectionModel(f"{model.name}.yaml", nc=int(model.num_classes), verbose=False)
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in export_ultralytics(model).items()}
    net.load_state_dict(state, strict=True)
    net.names = {i: str(n) for i, n in enumerate(class_names)}
    net.eval()
    return {
        "date": datetime.datetime.now().isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": None,
        "ema": net,
        "updates": None,
        "optimizer": None,
        "train_args": {"task": "detect", "model": f"{model.name}.yaml", "imgsz": int(image_size),
                       "exported_by": "jaxdet train.export"},
        "train_metrics": {},
        "train_results": {},
    }


def inference_function(model: nnx.Module, head, config, *, score_threshold: float, iou_threshold: float,
                       max_detections: int):
    """``images uint8 [B, S, S, 3] -> (boxes [B, D, 4] pixels, scores [B, D], classes int32 [B, D], valid [B, D])``:
    the model in eval mode and the head's single-label decode, the weights closed over."""
    graphdef, variables = nnx.split(model)
    options = {k: v for k, v in decode_options(config, head).items() if k != "multi_label"}

    def infer(images):
        net = nnx.merge(graphdef, variables)
        det = head.decode(net(images), score_threshold=score_threshold, iou_threshold=iou_threshold,
                          max_detections=max_detections, **options)
        h, w = images.shape[1:3]
        size = jnp.asarray([w, h, w, h], jnp.float32)
        boxes = jnp.clip(det.boxes.astype(jnp.float32) * size, 0.0, size)  # in the image, as predict and ultralytics
        return boxes, det.scores.astype(jnp.float32), det.classes.astype(jnp.int32), det.valid

    return infer


def export(workdir: str, out: str | None = None, *, weights: str = "ema", batch_size: int = 1,
           score_threshold: float = predict_lib.DEFAULT_SCORE_THRESHOLD, iou_threshold: float | None = None,
           max_detections: int | None = None) -> dict[str, str]:
    """Writes the ultralytics ``.pt``, the ``.jax_export`` function and its ``.json`` (module docstring); returns
    ``{"pt", "function", "json"}`` paths."""
    if batch_size < 1:
        raise ExportError(f"--batch-size must be >= 1, got {batch_size}")
    config, head, model, step = restore_model(workdir, weights=weights)
    names = predict_lib._class_names(config)
    size = int(config.data.image_size)
    out = out or os.path.join(workdir, "export", f"{getattr(model, 'name', 'model')}.pt")
    stem = out[:-3] if out.endswith(".pt") else out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    import torch  # noqa: PLC0415 - optional dependency: only the .pt export needs torch

    torch.save(ultralytics_checkpoint(model, names, image_size=size), out)
    iou = float(config.eval.iou_threshold if iou_threshold is None else iou_threshold)
    max_det = int(config.eval.max_detections if max_detections is None else max_detections)
    infer = inference_function(model, head, config, score_threshold=float(score_threshold), iou_threshold=iou,
                               max_detections=max_det)
    exported = jax.export.export(jax.jit(infer))(jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.uint8))
    function = stem + SUFFIX_FUNCTION
    with open(function, "wb") as f:
        f.write(exported.serialize())
    info = {"class_names": list(names), "image_size": size, "batch_size": batch_size, "weights": weights,
            "step": step, "score_threshold": float(score_threshold), "iou_threshold": iou,
            "max_detections": max_det, "inputs": f"uint8 [{batch_size}, {size}, {size}, 3] RGB letterboxed",
            "outputs": ["boxes float32 [B, D, 4] xyxy pixels", "scores float32 [B, D]", "classes int32 [B, D]",
                        "valid bool [B, D]"]}
    with open(stem + ".json", "w") as f:
        json.dump(info, f, indent=2)
    return {"pt": out, "function": function, "json": stem + ".json", "step": step}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the workdir of a `python -m train` run")
    parser.add_argument("--out", default=None, help="the .pt to write (default: WORKDIR/export/<model>.pt)")
    parser.add_argument("--weights", default="ema", choices=("ema", "raw"), help="the EMA's (default) or raw weights")
    parser.add_argument("--batch-size", type=int, default=1, help="the fixed batch of the jax.export function")
    parser.add_argument("--score-threshold", type=float, default=predict_lib.DEFAULT_SCORE_THRESHOLD)
    parser.add_argument("--iou-threshold", type=float, default=None, help="default: the run's eval.iou_threshold")
    parser.add_argument("--max-detections", type=int, default=None, help="default: the run's eval.max_detections")
    args = parser.parse_args(argv)
    try:
        paths = export(args.workdir, args.out, weights=args.weights, batch_size=args.batch_size,
                       score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
                       max_detections=args.max_detections)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    print(f"checkpoint step {paths['step']} ({args.weights} weights) -> {paths['pt']} (ultralytics.YOLO loads it), "
          f"{paths['function']} (jax.export, {paths['json']})", flush=True)


if __name__ == "__main__":
    main()
