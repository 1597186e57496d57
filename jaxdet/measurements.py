"""Measuring seed 003's gradient claims: how hard do vertex L2 and MGIoU pull, and do they agree?

Seed 003 motivates its hybrid loss with three numbers: at the plateau where MGIoU training gets stuck (every
prediction a full-image box) the MGIoU gradient is tiny, **≈ 0.001**, while the vertex L2 gradient is
**≈ 0.1–0.5**, and the two gradients have a **cosine similarity of 0.5–0.8**. This module measures them.

Setup (all in normalised image coordinates, K = 8 canonical vertices):

- Ground truth: the polygons of jaxdet's default dataset (:class:`jaxdet.data.synthetic.SyntheticShapes`,
  validation split), i.e. canonical octagons of rectangles, rotated rectangles, ellipses, triangles and regular
  polygons covering 25–50 % of the image side.
- Predictions, four places in the loss landscape:

  - ``full-image box``: the degenerate plateau, the image border resampled to K canonical vertices;
  - ``random vertices``: K points uniform in the image, in the order drawn (an untrained head has no order);
  - ``near-centre init``: every vertex at (0.5, 0.5) + N(0, 0.05²), what a freshly initialised regression head
    around the image centre outputs;
  - ``near target``: the target + N(0, 0.01²), late in training.

- Losses, per instance: L2 = seed 003's vertex loss (:func:`jaxdet.losses.vertex.keypoint_loss`,
  ``variant="seed"``, area = the target's box area, as in the seed) and MGIoU = :func:`jaxdet.polygons.mgiou_loss`.
- Gradients: of each instance's loss with respect to its own K×2 predicted vertices; the tables give the median
  and the 10th–90th percentile over instances of the two norms, their ratio and their cosine similarity.

Run ``python -m jaxdet.measurements`` (``--quick`` for a few images).

Glossary: seed 003: the hybrid L2 + MGIoU polygon loss with α schedules and a loss-EMA normalisation (the
``ultralytics-mgiou`` fork, on Le et al. 2025, "Marginalized Generalized IoU (MGIoU)", arXiv 2504.16443).
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks
from jaxdet.data.geometry import canonical_polygon
from jaxdet.data.synthetic import SyntheticShapes
from jaxdet.gradients import gradient_cosine, gradient_norms, term_gradients
from jaxdet.losses.vertex import keypoint_loss
from jaxdet.polygons import mgiou_loss

__all__ = ["SEED_003_CLAIMS", "format_figures", "full_image_polygon", "gradient_figures", "main", "prediction_sets"]

#: Seed 003's stated figures, for the table.
SEED_003_CLAIMS = {
    "mgiou_grad_norm": "≈ 0.001 (at the plateau)",
    "l2_grad_norm": "≈ 0.1–0.5",
    "grad_cosine": "0.5–0.8",
}


def full_image_polygon(k: int = 8) -> np.ndarray:
    """The image border ``[0, 1]²`` as a canonical K-vertex polygon ``[K, 2]`` (the degenerate plateau)."""
    return canonical_polygon(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), k)


def ground_truth_polygons(*, num_images: int = 128, k: int = 8, seed: int = 0) -> np.ndarray:
    """``[N, K, 2]`` float64 polygons of the default synthetic dataset's validation split."""
    _checks.positive_int(num_images, "num_images")
    data = SyntheticShapes("val", num_images=num_images, seed=seed, num_vertices=k)
    polys = [data[i]["polygons"] for i in range(num_images)]
    return np.concatenate(polys, axis=0).astype(np.float64)


def prediction_sets(target: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """The four prediction sets (``[N, K, 2]`` each) described in the module docstring."""
    _checks.layout(target, "target", shape="[N, K, 2]", ndim=3, last=2)
    rng = np.random.default_rng(seed)
    n, k, _ = target.shape
    return {
        "full-image box": np.broadcast_to(full_image_polygon(k).astype(np.float64), target.shape).copy(),
        "random vertices": rng.uniform(0.0, 1.0, (n, k, 2)),
        "near-centre init": 0.5 + rng.normal(0.0, 0.05, (n, k, 2)),
        "near target": target + rng.normal(0.0, 0.01, (n, k, 2)),
    }


@jax.jit
def _per_instance(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    def losses(p, t):
        wh = jnp.max(t, axis=-2) - jnp.min(t, axis=-2)
        area = wh[..., 0] * wh[..., 1]
        return keypoint_loss(p, t, area, variant="seed"), mgiou_loss(p, t)

    def one(p, t):
        terms, grads = term_gradients(lambda q, t: dict(zip(("l2", "mgiou"), losses(q, t))), p, t)
        norms = gradient_norms(grads)
        defined = norms["l2"] * norms["mgiou"] > 0  # the cosine of a zero gradient is undefined: NaN here
        cosine = jnp.where(defined, gradient_cosine(grads["l2"], grads["mgiou"]), jnp.nan)
        return {**terms, "l2_grad_norm": norms["l2"], "mgiou_grad_norm": norms["mgiou"], "grad_cosine": cosine}

    return jax.vmap(one)(pred, target)


def gradient_figures(*, num_images: int = 128, k: int = 8, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per-instance losses, gradient norms, ratio and cosine for every prediction set.

    Returns:
      ``{setting: {quantity: [N] float64}}`` with quantities ``l2``, ``mgiou``, ``l2_grad_norm``,
      ``mgiou_grad_norm``, ``ratio`` (MGIoU / L2 norm) and ``grad_cosine``.
    """
    target = ground_truth_polygons(num_images=num_images, k=k, seed=seed)
    with jax.enable_x64(True):
        figures = {}
        for name, pred in prediction_sets(target, seed=seed).items():
            out = {key: np.asarray(v, np.float64) for key, v in _per_instance(pred, target).items()}
            with np.errstate(divide="ignore", invalid="ignore"):
                out["ratio"] = out["mgiou_grad_norm"] / out["l2_grad_norm"]
            figures[name] = out
    return figures


def _summary(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return "n/a"
    lo, med, hi = np.percentile(v, [10, 50, 90])
    return f"{med:.3g} [{lo:.3g}, {hi:.3g}]"


def format_figures(figures: dict[str, dict[str, np.ndarray]]) -> str:
    """Markdown table: median [10th, 90th percentile] per setting and quantity, next to seed 003's claims."""
    quantities = [
        ("l2_grad_norm", "‖∇ L2‖"),
        ("mgiou_grad_norm", "‖∇ MGIoU‖"),
        ("ratio", "‖∇ MGIoU‖ / ‖∇ L2‖"),
        ("grad_cosine", "cos(∇ L2, ∇ MGIoU)"),
        ("l2", "L2 loss"),
        ("mgiou", "MGIoU loss"),
    ]
    n = len(next(iter(figures.values()))["l2"])
    lines = [
        f"Per-instance gradients w.r.t. the K×2 predicted vertices (normalised coordinates), {n} ground-truth "
        "polygons; median [10th, 90th percentile].",
        "",
        "| setting | " + " | ".join(label for _, label in quantities) + " |",
        "|---|" + "---|" * len(quantities),
    ]
    for name, out in figures.items():
        lines.append(f"| {name} | " + " | ".join(_summary(out[key]) for key, _ in quantities) + " |")
    lines.append(
        "| *seed 003 claim* | " + " | ".join(SEED_003_CLAIMS.get(key, "") for key, _ in quantities) + " |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 images")
    args = parser.parse_args(argv)
    figures = gradient_figures(num_images=4 if args.quick else args.num_images, seed=args.seed)
    print(format_figures(figures))
    return figures


if __name__ == "__main__":
    main()
