"""Detection losses, one module per family. Every name here is also exported from :mod:`jaxdet`."""

from jaxdet.losses.focal import (
    binary_cross_entropy_with_logits,
    quality_focal_loss,
    retinanet_bias_init,
    retinanet_prior_bias,
    sigmoid_focal_loss,
    softmax_focal_loss,
    varifocal_loss,
)
from jaxdet.losses.harmonic import (
    REGRESSION_LOSSES,
    HarmonicLoss,
    harmonic_iou_loss,
    harmonic_iou_loss_from_iou,
    harmonic_loss,
    harmonic_weighting,
    smooth_l1_loss,
)
from jaxdet.losses.hybrid import (
    NORMALIZATIONS,
    HybridLoss,
    HybridState,
    hybrid_components,
    hybrid_polygon_loss,
    hybrid_state_init,
)
from jaxdet.losses.ssd import (
    SSD_TERMS,
    SSDLoss,
    hard_negative_mask,
    ssd_multibox_loss,
    ssd_multibox_loss_from_matches,
)
from jaxdet.losses.vertex import (
    OKS_SIGMA,
    box_area_of_polygon,
    keypoint_loss,
    vertex_l2_loss,
)
from jaxdet.losses.yolo import YOLOV1_TERMS, YoloV1Loss, yolov1_decode, yolov1_loss
from jaxdet.losses.yolov8 import (
    YOLOV8_BOX_LOSSES,
    YOLOV8_CLS_LOSSES,
    YOLOV8_TERMS,
    YoloV8Loss,
    dfl_loss,
    yolov8_loss,
    yolov8_loss_from_targets,
)

__all__ = [
    "HarmonicLoss",
    "HybridLoss",
    "HybridState",
    "NORMALIZATIONS",
    "OKS_SIGMA",
    "REGRESSION_LOSSES",
    "SSDLoss",
    "SSD_TERMS",
    "YOLOV1_TERMS",
    "YOLOV8_BOX_LOSSES",
    "YOLOV8_CLS_LOSSES",
    "YOLOV8_TERMS",
    "YoloV1Loss",
    "YoloV8Loss",
    "binary_cross_entropy_with_logits",
    "box_area_of_polygon",
    "dfl_loss",
    "hard_negative_mask",
    "harmonic_iou_loss",
    "harmonic_iou_loss_from_iou",
    "harmonic_loss",
    "harmonic_weighting",
    "hybrid_components",
    "hybrid_polygon_loss",
    "hybrid_state_init",
    "keypoint_loss",
    "quality_focal_loss",
    "retinanet_bias_init",
    "retinanet_prior_bias",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "softmax_focal_loss",
    "ssd_multibox_loss",
    "ssd_multibox_loss_from_matches",
    "varifocal_loss",
    "vertex_l2_loss",
    "yolov1_decode",
    "yolov1_loss",
    "yolov8_loss",
    "yolov8_loss_from_targets",
]
