"""Detection losses, one module per family. Every name here is also exported from :mod:`jaxdet`."""

from jaxdet.losses.hybrid import (
    NORMALIZATIONS,
    HybridLoss,
    HybridState,
    hybrid_components,
    hybrid_polygon_loss,
    hybrid_state_init,
)
from jaxdet.losses.ssd import SSD_TERMS, SSDLoss, hard_negative_mask, ssd_multibox_loss, ssd_multibox_loss_from_matches
from jaxdet.losses.vertex import OKS_SIGMA, box_area_of_polygon, keypoint_loss, vertex_l2_loss
from jaxdet.losses.yolo import YOLOV1_TERMS, YoloV1Loss, yolov1_decode, yolov1_loss
