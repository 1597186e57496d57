"""jaxdet: object-detection losses in JAX with visible gradient paths, checked against PyTorch.

The public API is one hop away: ``jaxdet.complete_box_iou_loss``, ``jaxdet.term_gradients``, ... . The
PyTorch parity tool lives in :mod:`jaxdet.parity` and imports torch lazily.
"""

from jaxdet.assign import (
    SSD_BOX_WEIGHTS,
    YoloV1Targets,
    ssd_decode,
    ssd_encode,
    ssd_match,
    yolov1_grid_assign,
)
from jaxdet.boxes import (
    IOU_LOSSES,
    box_area,
    box_convert,
    box_iou,
    box_iou_loss,
    box_iou_pairwise,
    complete_box_iou,
    complete_box_iou_loss,
    complete_box_iou_pairwise,
    distance_box_iou,
    distance_box_iou_loss,
    distance_box_iou_pairwise,
    generalized_box_iou,
    generalized_box_iou_loss,
    generalized_box_iou_pairwise,
)
from jaxdet.gradients import (
    GradientPath,
    cosine_matrix,
    gradient_cosine,
    gradient_norms,
    route_target,
    term_gradients,
)
from jaxdet.polygons import (
    convex_polygon_iou,
    mgiou,
    mgiou_loss,
    mgiou_rotated,
    mgiou_rotated_loss,
    polygon_area,
    polygon_signed_area,
    rotated_box_corners,
    sort_vertices_ccw,
)
from jaxdet.losses import *  # noqa: F403  (the curated loss API, listed in jaxdet/losses/__init__.py)
from jaxdet.schedules import (
    ALPHA_SCHEDULES,
    AdaptiveAlphaState,
    adaptive_alpha_init,
    adaptive_alpha_regime,
    adaptive_alpha_update,
    cosine_alpha,
    exponential_alpha,
    linear_alpha,
    make_alpha_schedule,
    static_alpha,
    step_alpha,
    two_stage_alpha,
)

__version__ = "0.1.0"
