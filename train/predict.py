"""Run a trained model on new images: ``python -m train.predict --workdir RUN --images DIR``.

Usage::

    python -m train.predict --workdir workdir/yolov8n_shapes --images photos/ [--out OUT]
        [--score-threshold 0.25] [--iou-threshold IOU] [--max-detections D] [--batch-size 8]
        [--tile SIZE [--overlap 0.2]]

It loads the run's ``config.json`` and its latest checkpoint (the EMA weights when the checkpoint has them),
reads every image of ``DIR`` (:data:`IMAGE_EXTENSIONS`; EXIF orientation applied, converted to RGB),
letterboxes each to the model's ``data.image_size`` as training did (:func:`jaxdet.data.letterbox.letterbox_image`),
runs the jitted model and the head's decode (single-label NMS, as ultralytics' predictor) in batches, maps the
boxes back to original pixels (:func:`jaxdet.data.letterbox.boxes_to_original`) and writes into ``OUT``
(default ``RUN/predict``):

* one annotated image per input (boxes in class colours, ``name score``), same file name (``.png`` for
  formats other than JPEG/PNG);
* ``predictions.json``: COCO results, ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` in
  original pixels, ``category_id = class + 1`` (as :func:`jaxdet.metrics.coco_metrics`);
* ``images.json``: a COCO file without annotations, ``{"images": [{"id", "file_name", "width", "height"}],
  "categories": [{"id", "name"}], "annotations": []}``, mapping file names to ``image_id`` — so
  ``faster_coco_eval.COCO("images.json").loadRes("predictions.json")`` loads the results.

Defaults: ``--score-threshold 0.25`` (ultralytics' predict conf), the run's ``eval.iou_threshold``,
``eval.max_detections`` and ``eval.pre_nms_top_k``.

``--tile SIZE`` is for images much larger than the model's (aerial scenes): each image is cut into overlapping
``SIZE x SIZE`` windows (:func:`jaxdet.tiling.tile_windows`, ``--overlap F`` of a window shared with its neighbours,
default 0.2), each window is predicted as above, and the detections are mapped back to the image and merged by
class-aware NMS at the same IoU threshold (:func:`jaxdet.tiling.merge_tiles`); the outputs are the same files.

In a notebook, :func:`predict` returns one dict per image; :func:`load_predictor` keeps the compiled model for
several calls. Errors (:class:`PredictError`, exit status 2 on the command line) name what is wrong: a workdir
without ``config.json`` or checkpoints, an empty image folder, an unreadable image file, a bad ``--tile`` or
``--overlap``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image

from jaxdet import _checks
from jaxdet.compile_options import compiler_options
from jaxdet.data import images as data_images
from jaxdet.data.errors import BadImageError
from jaxdet.data.letterbox import boxes_to_original, letterbox_image
from jaxdet.data.readers import IMAGE_EXTENSIONS
from jaxdet.data.synthetic import SHAPE_CLASSES
from jaxdet.nms import Detections
from jaxdet.tiling import merge_tiles, tile_windows
from train import checkpoint as ckpt_lib
from train import compile_cache
from train import model_state as model_state_lib
from train import step as step_lib
from train.data import SYNTHETIC_NAMES
from train.drawing import draw_detections
from train.task import decode_options, make_head

#: ultralytics' predictor confidence threshold.
DEFAULT_SCORE_THRESHOLD = 0.25
#: ``--overlap`` with ``--tile``: about split_dota's 200 px gap between 1,024 px crops.
DEFAULT_TILE_OVERLAP = 0.2


class PredictError(ValueError):
    """A workdir, image folder or image file that predict cannot use; the message names it."""


def read_image(path: str) -> np.ndarray:
    """uint8 ``[h, w, 3]`` RGB of an image file, as the readers decode it (:func:`jaxdet.data.read_image`: EXIF
    orientation applied; grayscale, alpha, palette and 16-bit images converted as ``cv2.imread`` does).

    Raises:
      PredictError: naming the file when it cannot be read.
    """
    try:
        return data_images.read_image(path)
    except BadImageError as err:
        raise PredictError(str(err)) from None


def _class_names(config) -> tuple[str, ...]:
    names = tuple(str(c) for c in (config.data.get("class_names", ()) or ()))
    n = int(config.model.num_classes)
    if not names and str(config.data.get("name", "shapes")) in SYNTHETIC_NAMES:

        names = tuple(SHAPE_CLASSES)
    return names if len(names) == n else tuple(str(k) for k in range(n))


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's ``config.json`` as a ConfigDict.

    Raises:
      PredictError: naming the workdir when it has no ``config.json``, or the file when it holds no JSON object.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise PredictError(f"--workdir {workdir!r} has no config.json: is it the workdir of a `python -m train` run?")
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise PredictError(f"{path} does not hold a config (a JSON object)")
    return ml_collections.ConfigDict(raw)


def restore_latest(workdir: str) -> tuple[Any, Any, Any, dict[str, Any], int]:
    """``(config, head, graphdef, state, step)``: a workdir's config (:func:`load_config`), its head
    (:func:`train.task.make_head`), the model's graphdef and the train state of its latest checkpoint (with the EMA
    when the run kept one: :func:`train.model_state.eval_variables` picks the weights to infer with).

    The one loader of ``python -m train.predict`` and ``python -m train.export``.

    Raises:
      PredictError: naming the workdir without ``config.json`` or checkpoints, or the checkpoint that cannot be
        restored.
    """
    config = load_config(workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    checkpointer = ckpt_lib.Checkpointer(ckpt_dir, keep=0) if os.path.isdir(ckpt_dir) else None
    try:
        if checkpointer is None or not checkpointer.all_steps():
            raise PredictError(f"--workdir {workdir!r} has no checkpoint in {ckpt_dir}: train it first")
        head = make_head(config)
        _, graphdef, init_fn = step_lib.make_recipe_init_fn(
            config.train, lambda rngs: head.build_model(config.model, rngs=rngs), seed=int(config.seed),
            init_loss_state=head.init_state,
        )
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:1]), ("data",))
        step = checkpointer.latest_step()
        try:
            state, _ = checkpointer.restore(step, step_lib.abstract_state(jax.eval_shape(init_fn), mesh))
        except Exception as err:  # orbax raises many kinds (ValueError, OSError, KeyError, ...)
            raise PredictError(f"checkpoint {os.path.join(ckpt_dir, str(step))} cannot be restored "
                               f"({type(err).__name__}: {str(err)[:300]})") from None
    finally:
        if checkpointer is not None:
            checkpointer.close()
    return config, head, graphdef, state, int(step)


@dataclasses.dataclass
class Predictor:
    """A restored run: its config, class names, checkpoint step, NMS IoU and the jitted ``images -> Detections``.

    Call :meth:`predict_arrays` with uint8 ``[h, w, 3]`` images of any sizes, :meth:`predict_tiled` for images much
    larger than the model's.
    """

    config: Any
    class_names: tuple[str, ...]
    step: int
    image_size: tuple[int, int]
    iou_threshold: float
    _variables: Any
    _forward: Any  # jitted (variables, images [B, H, W, 3]) -> Detections

    def predict_arrays(self, images: Sequence[np.ndarray], *, batch_size: int = 8) -> list[dict[str, Any]]:
        """Per-image results for uint8 ``[h, w, 3]`` images (letterboxed, decoded, mapped to their pixels).

        Returns:
          one dict per image: ``orig_size (h, w)``, ``boxes`` float64 ``[P, 4]`` pixel xyxy, ``scores [P]``,
          ``classes`` int ``[P]``, ``names`` (P class names), in decreasing score.
        """

        if batch_size < 1:
            raise PredictError(f"batch_size must be >= 1, got {batch_size}")
        out = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start:start + batch_size])
            boxed = [letterbox_image(np.asarray(im, np.uint8), self.image_size) for im in chunk]
            batch = np.stack([b[0] for b in boxed] + [boxed[-1][0]] * (batch_size - len(chunk)))  # fixed shape
            det = self._forward(self._variables, batch)  # uint8: the model scales it on the device
            boxes, scores, classes, valid = (np.asarray(x) for x in (det.boxes, det.scores, det.classes, det.valid))
            for i, im in enumerate(chunk):
                keep = valid[i]
                orig = np.array(np.asarray(im).shape[:2], np.int64)
                pix = boxes_to_original(boxes[i][keep], ratio_pad=boxed[i][1], orig_size=orig, size=self.image_size)
                cls = classes[i][keep].astype(np.int64)
                out.append({
                    "orig_size": (int(orig[0]), int(orig[1])),
                    "boxes": pix,
                    "scores": scores[i][keep].astype(np.float64),
                    "classes": cls,
                    "names": [self.class_names[c] for c in cls],
                })
        return out

    def predict_tiled(self, images: Sequence[np.ndarray], *, tile: int, overlap: float,
                      batch_size: int = 8) -> list[dict[str, Any]]:
        """:meth:`predict_arrays` window by window: each image is cut into the overlapping ``tile x tile`` windows of
        :func:`jaxdet.tiling.tile_windows`, each window is predicted as an image (letterboxed to the model's size),
        and the windows' detections are mapped back and merged by class-aware NMS at the predictor's IoU threshold
        (:func:`jaxdet.tiling.merge_tiles`; every window keeps up to ``max_detections``, the image every survivor).

        Returns:
          one dict per image as :meth:`predict_arrays`, plus ``windows`` int ``[K, 4]`` (the image's windows, xyxy
          pixels) and ``window`` int ``[P]`` (the window each detection came from).
        """
        check_tiling(tile, overlap)
        out = []
        for im in images:
            im = np.asarray(im, np.uint8)
            windows = tile_windows(im.shape[0], im.shape[1], size=tile, overlap=overlap)
            per = self.predict_arrays([im[y0:y1, x0:x1] for x0, y0, x1, y1 in windows], batch_size=batch_size)
            d = max(1, *(len(r["scores"]) for r in per))
            pad = lambda x, r: np.pad(x, [(0, d - len(r["scores"]))] + [(0, 0)] * (x.ndim - 1))  # noqa: E731
            merged = merge_tiles(
                np.stack([pad(r["boxes"], r) for r in per]), np.stack([pad(r["scores"], r) for r in per]),
                np.stack([pad(r["classes"], r) for r in per]),
                np.stack([pad(np.ones(len(r["scores"]), bool), r) for r in per]), windows,
                iou_threshold=self.iou_threshold)
            out.append({
                "orig_size": (int(im.shape[0]), int(im.shape[1])),
                "boxes": merged.boxes,
                "scores": merged.scores,
                "classes": merged.classes,
                "names": [self.class_names[c] for c in merged.classes],
                "windows": windows,
                "window": merged.windows,
            })
        return out


def check_tiling(tile: int | None, overlap: float | None) -> None:
    """``--tile SIZE`` a positive int (pixels), ``--overlap F`` in ``[0, 1)`` and only with ``--tile``.

    Raises:
      PredictError: naming the flag and what it needs.
    """
    if tile is None:
        if overlap is not None:
            raise PredictError("--overlap needs --tile SIZE: overlap is the fraction of a tile that neighbours share")
        return
    try:
        _checks.positive_int(tile, "--tile", hint="the window's side in pixels")
        _checks.number(overlap, "--overlap", low=0.0, high=1.0, high_open=True,
                       hint="the fraction of a tile that neighbouring tiles share")
    except ValueError as err:
        raise PredictError(str(err)) from None


def load_predictor(
    workdir: str,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float | None = None,
    max_detections: int | None = None,
) -> Predictor:
    """Restores the latest checkpoint of ``workdir`` and compiles the forward pass + decode.

    Args:
      workdir: a ``python -m train`` workdir (``config.json``, ``checkpoints/``).
      score_threshold: detections need a score above it.
      iou_threshold: NMS IoU (default: the run's ``eval.iou_threshold``).
      max_detections: detections per image (default: the run's ``eval.max_detections``).
    """

    config, head, graphdef, state, step = restore_latest(workdir)
    ec = config.eval
    options = {k: v for k, v in decode_options(config, head).items() if k != "multi_label"}  # predictor: single label
    iou = float(ec.iou_threshold if iou_threshold is None else iou_threshold)
    max_det = int(ec.max_detections if max_detections is None else max_detections)

    def forward(variables, images):
        model = model_state_lib.merge_model(graphdef, variables, train=False)
        return head.decode(model(images), score_threshold=float(score_threshold), iou_threshold=iou,
                           max_detections=max_det, **options)

    size = int(config.data.image_size)
    return Predictor(
        config=config,
        class_names=_class_names(config),
        step=int(step),
        image_size=(size, size),
        iou_threshold=iou,
        _variables=dict(zip(("params", "model_state"), model_state_lib.eval_variables(state))),
        _forward=jax.jit(forward, compiler_options=compiler_options()),
    )


def list_images(images) -> list[str]:
    """The image files of a folder (sorted, :data:`IMAGE_EXTENSIONS`), a single file, or a list of files."""
    if isinstance(images, (str, os.PathLike)):
        path = os.fspath(images)
        if os.path.isdir(path):
            files = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f)))
            if not files:
                raise PredictError(f"--images {path!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            return files
        if not os.path.isfile(path):
            raise PredictError(f"--images {path!r} is neither a folder nor a file")
        return [path]
    files = [os.fspath(p) for p in images]
    if not files:
        raise PredictError("images: expected a folder, a file or a non-empty list")
    return files


def predict(
    workdir: str,
    images,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float | None = None,
    max_detections: int | None = None,
    batch_size: int = 8,
    predictor: Predictor | None = None,
    tile: int | None = None,
    overlap: float | None = None,
) -> list[dict[str, Any]]:
    """Predictions for ``images`` with the latest checkpoint of ``workdir`` (for notebooks).

    Args:
      workdir: a ``python -m train`` workdir.
      images: a folder, an image file, a list of files, or a list of uint8 ``[h, w, 3]`` arrays.
      score_threshold, iou_threshold, max_detections: see :func:`load_predictor`.
      batch_size: images (or windows, when tiled) per forward pass.
      predictor: a :func:`load_predictor` result to reuse (then ``workdir`` and the thresholds are not read).
      tile: predict each image in ``tile x tile`` windows (:meth:`Predictor.predict_tiled`); None: whole images.
      overlap: the fraction of a window its neighbours share (default :data:`DEFAULT_TILE_OVERLAP`); only with
        ``tile``.

    Returns:
      one dict per image as :meth:`Predictor.predict_arrays` (:meth:`Predictor.predict_tiled` when tiled), plus
      ``file`` (the path, or None for arrays).
    """
    check_tiling(tile, overlap)
    if tile is not None and overlap is None:
        overlap = DEFAULT_TILE_OVERLAP
    if predictor is None:
        predictor = load_predictor(workdir, score_threshold=score_threshold, iou_threshold=iou_threshold,
                                   max_detections=max_detections)

    def run(arrays):
        if tile is None:
            return predictor.predict_arrays(arrays, batch_size=batch_size)
        return predictor.predict_tiled(arrays, tile=tile, overlap=overlap, batch_size=batch_size)

    if isinstance(images, (list, tuple)) and images and isinstance(images[0], np.ndarray):
        return [r | {"file": None} for r in run(list(images))]
    files = list_images(images)
    results = []
    for start in range(0, len(files), batch_size):  # read one batch at a time
        chunk = files[start:start + batch_size]
        results += [r | {"file": f} for f, r in zip(chunk, run([read_image(f) for f in chunk]))]
    return results


def coco_results(results: Sequence[dict[str, Any]], class_names: Sequence[str]) -> tuple[list, dict]:
    """``(predictions, images_file)``: COCO results and the COCO image/category file they refer to.

    Image ids are 1..N in the order of ``results``; ``category_id = class + 1``; boxes ``[x, y, w, h]``.
    """
    preds, images = [], []
    for i, r in enumerate(results):
        h, w = r["orig_size"]
        name = os.path.basename(r["file"]) if r.get("file") else f"image_{i + 1}"
        images.append({"id": i + 1, "file_name": name, "width": int(w), "height": int(h)})
        for b, s, c in zip(r["boxes"], r["scores"], r["classes"]):
            preds.append({"image_id": i + 1, "category_id": int(c) + 1,
                          "bbox": [round(float(b[0]), 3), round(float(b[1]), 3), round(float(b[2] - b[0]), 3),
                                   round(float(b[3] - b[1]), 3)],
                          "score": round(float(s), 5)})
    categories = [{"id": k + 1, "name": str(n)} for k, n in enumerate(class_names)]
    return preds, {"images": images, "categories": categories, "annotations": []}


def annotate(image: np.ndarray, result: dict[str, Any], class_names: Sequence[str]) -> np.ndarray:
    """uint8 ``[h, w, 3]``: ``image`` with ``result``'s boxes, class names and scores drawn
    (:func:`train.drawing.draw_detections` at the image's own size)."""
    h, w = image.shape[:2]
    p = len(result["scores"])
    boxes = np.asarray(result["boxes"], np.float64).reshape(p, 4) / np.array([w, h, w, h])
    det = Detections(boxes[None], np.asarray(result["scores"])[None], np.asarray(result["classes"])[None],
                     np.ones((1, p), bool))
    grid = draw_detections(image[None], det, scale=1, ncols=1, class_names=list(class_names), max_images=1)
    return grid[1:-1, 1:-1]


def write_outputs(results: Sequence[dict[str, Any]], out_dir: str, class_names: Sequence[str]) -> list[str]:
    """Writes the annotated images, ``predictions.json`` and ``images.json`` (module docstring); returns paths."""

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for r in results:
        name = os.path.basename(r["file"])
        stem, ext = os.path.splitext(name)
        target = os.path.join(out_dir, name if ext.lower() in (".jpg", ".jpeg", ".png") else stem + ".png")
        Image.fromarray(annotate(read_image(r["file"]), r, class_names)).save(target)
        written.append(target)
    preds, images = coco_results(results, class_names)
    for name, payload in (("predictions.json", preds), ("images.json", images)):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            json.dump(payload, f)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the workdir of a `python -m train` run")
    parser.add_argument("--images", required=True, help="a folder of images (or one image file)")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/predict)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    parser.add_argument("--iou-threshold", type=float, default=None, help="default: the run's eval.iou_threshold")
    parser.add_argument("--max-detections", type=int, default=None, help="default: the run's eval.max_detections")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="predict large images in overlapping SIZE x SIZE pixel windows, merged by NMS (default: "
                             "whole images)")
    parser.add_argument("--overlap", type=float, default=None, metavar="F",
                        help=f"with --tile: the fraction of a window its neighbours share, in [0, 1) (default "
                             f"{DEFAULT_TILE_OVERLAP})")
    parser.add_argument("--compile-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="JAX's persistent compilation cache ($JAXDET_CACHE_DIR/xla, else ~/.cache/jaxdet/xla)")
    args = parser.parse_args(argv)
    if args.compile_cache:
        compile_cache.enable()  # before the first compile: the forward pass compiles once per machine
    out = args.out or os.path.join(args.workdir, "predict")
    try:
        check_tiling(args.tile, args.overlap)
        files = list_images(args.images)
        predictor = load_predictor(args.workdir, score_threshold=args.score_threshold,
                                   iou_threshold=args.iou_threshold, max_detections=args.max_detections)
        results = predict(args.workdir, files, batch_size=args.batch_size, predictor=predictor, tile=args.tile,
                          overlap=args.overlap)
        write_outputs(results, out, predictor.class_names)
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    n = sum(len(r["scores"]) for r in results)
    print(f"checkpoint step {predictor.step}: {n} detections in {len(results)} images -> {out} "
          f"(annotated images, predictions.json, images.json)", flush=True)


if __name__ == "__main__":
    main()
